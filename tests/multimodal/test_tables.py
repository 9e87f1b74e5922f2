"""The multimodal table: one autoencoding run fills a whole row."""

import pytest

from perceiver_tools import paper_results as pr
from perceiver_tools import tables


def test_one_run_fills_the_row_with_psnr_in_db_and_top1_in_percent(tmp_path):
  row = 'Sample clips (real photos + speech, CPU)'
  tables.write_result(
    str(tmp_path),
    pr.Tag('perceiver_io_multimodal', row, pr.ALL),
    {'video_psnr': 21.25, 'audio_psnr': 18.5, 'top1': 0.75},
  )
  results = {r.tag.column: r.value for r in tables.read_results(str(tmp_path))}
  assert results == {'video PSNR (dB)': 21.25, 'audio PSNR (dB)': 18.5, 'top-1 (%)': 75.0}
  text = tables.make_tables([str(tmp_path)], ['perceiver_io_multimodal'])
  line = next(l for l in text.splitlines() if l.startswith(f'| {row}'))
  assert line.split(' | ')[1:4] == ['21.2', tables.MISSING, tables.MISSING]
  assert '75.0' in line
  # The released-model row stays missing: PAPERS.md gives no figures for it.
  assert all(v is None for r in pr.PERCEIVER_IO_MULTIMODAL.rows for v in r.paper.values())


def test_missing_metric_is_an_error(tmp_path):
  tables.write_result(
    str(tmp_path),
    pr.Tag('perceiver_io_multimodal', 'Released model, Kinetics-700-2020', pr.ALL),
    {'video_psnr': 20.0, 'top1': 0.1},
  )
  with pytest.raises(tables.TableError, match="needs metric 'audio_psnr'"):
    tables.read_results(str(tmp_path))
  with pytest.raises(ValueError, match='no column'):
    pr.check_tag(pr.Tag('perceiver_t1', 'ResNet-50', pr.ALL))
