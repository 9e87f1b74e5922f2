"""Language tests import the installed package only (configs via perceiver_configs)."""
