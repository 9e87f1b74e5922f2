"""perceiver.train.progress: throttled progress lines with an ETA."""

from perceiver.train import progress as progress_lib


def test_reports_rate_and_eta_and_stays_quiet_when_fast(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(progress_lib.time, 'monotonic', lambda: clock[0])
  lines = []
  p = progress_lib.Progress(100, 'eval test:', every_s=10.0, report=lines.append)
  p.update(0)
  clock[0] += 60.0  # The first step compiles: not timed.
  p.update(1)
  clock[0] += 5.0
  p.update(11)
  assert lines == []  # Within every_s: nothing.
  clock[0] += 15.0  # 20 s for 40 batches: 2/s, 59 left -> 29.5 s.
  p.update(41)
  assert lines == ['eval test: 41/100 batches (2.0 batches/s, ETA 0m29s)']


def test_unknown_total_reports_count_and_rate():
  p = progress_lib.Progress(None, 'eval:', unit='images')
  assert p.line(0).startswith('eval: 0 images')
