"""perceiver.train.progress: throttled progress lines with an ETA."""

from perceiver.train import progress as progress_lib


def test_reports_rate_and_eta_and_stays_quiet_when_fast(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(progress_lib.time, 'monotonic', lambda: clock[0])
  lines = []
  p = progress_lib.Progress(100, 'eval test:', every_s=10.0, report=lines.append)
  p.update(0)  # Starts the clock (a first, compiling step is not timed).
  clock[0] += 5.0
  p.update(10)
  assert lines == []  # Within every_s: nothing.
  clock[0] += 15.0  # 20 s for 40 batches: 2/s, 60 left -> 30 s.
  p.update(40)
  assert lines == ['eval test: 40/100 batches (2.0 batches/s, ETA 0:30)']


def test_unknown_total_reports_count_and_rate():
  p = progress_lib.Progress(None, 'eval:', unit='images')
  assert p.line(0).startswith('eval: 0 images')
