"""Paper tables from eval results: read workdirs, render Markdown.

A workdir contributes one result when it says which table cell it fills
(a `Tag`) and holds an evaluation:

- tag: `config.table` = {table, row, column} in the `config.json` the runner
  saves, else a `table_row.json` beside it (`write_tag`), else the tag inside
  `result.json`;
- evaluation: `result.json` (`write_result`, e.g. scripts/eval_checkpoint.py)
  if present, else the last line of the runner's `metrics.jsonl` whose split
  is the config's `eval.split` (the final evaluation of the run).

Figures are percentages (the runner logs fractions). Several results for one
cell (seeds) are averaged and counted; a cell with none shows "—". Nothing
is ever filled in from anywhere else: the paper's figure stands beside ours,
never instead of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

from perceiver_tools import paper_results as pr

MISSING = '—'
CONFIG_NAME = 'config.json'
METRICS_NAME = 'metrics.jsonl'
TAG_NAME = 'table_row.json'
RESULT_NAME = 'result.json'


class TableError(ValueError):
  """A workdir cannot be read into a table cell; the message says why."""


@dataclasses.dataclass(frozen=True)
class Result:
  tag: pr.Tag
  value: float  # Percent (or the column's unit: Table.column_metrics).
  workdir: str
  step: Optional[int] = None


def write_tag(workdir: str, tag: pr.Tag) -> str:
  """Tags a workdir whose config has no `table` section (e.g. paper presets)."""
  tag = pr.check_tag(tag)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, TAG_NAME)
  with open(path, 'w') as f:
    json.dump(tag._asdict(), f, indent=2)
  return path


def write_result(workdir: str, tag: Optional[pr.Tag], metrics: Mapping[str, float], **extra: Any) -> str:
  """Writes `result.json`: an evaluation made outside the runner (fractions)."""
  os.makedirs(workdir, exist_ok=True)
  record = dict(metrics={k: float(v) for k, v in metrics.items()}, **extra)
  if tag is not None:
    record['table'] = pr.check_tag(tag)._asdict()
  path = os.path.join(workdir, RESULT_NAME)
  with open(path, 'w') as f:
    json.dump(record, f, indent=2)
  return path


def _read_json(path: str) -> Optional[dict]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise TableError(f'{path}: not valid JSON ({e})') from None


def _tag_from(section: Any, where: str) -> Optional[pr.Tag]:
  if not isinstance(section, Mapping) or not section.get('table'):
    return None  # Absent or empty: the run fills no table cell.
  missing = [k for k in pr.Tag._fields if not section.get(k)]
  if missing:
    raise TableError(f'{where}: table tag lacks {missing}')
  try:
    return pr.check_tag(pr.Tag(section['table'], section['row'], section['column']))
  except ValueError as e:
    raise TableError(f'{where}: {e}') from None


def read_tag(workdir: str) -> Optional[pr.Tag]:
  config = _read_json(os.path.join(workdir, CONFIG_NAME)) or {}
  tag = _tag_from(config.get('table'), os.path.join(workdir, CONFIG_NAME) + ':table')
  if tag is None:
    tag = _tag_from(_read_json(os.path.join(workdir, TAG_NAME)), os.path.join(workdir, TAG_NAME))
  if tag is None:
    result = _read_json(os.path.join(workdir, RESULT_NAME)) or {}
    tag = _tag_from(result.get('table'), os.path.join(workdir, RESULT_NAME) + ':table')
  return tag


def read_metrics(workdir: str) -> dict[str, list[dict]]:
  """The runner's metrics.jsonl by split, in step order (a repeated step: the later line)."""
  path = os.path.join(workdir, METRICS_NAME)
  if not os.path.exists(path):
    raise TableError(f'{path} not found')
  by_split: dict[str, dict[int, dict]] = {}
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # A line cut short by a kill.
      by_split.setdefault(record['split'], {})[int(record['step'])] = record
  return {split: [records[k] for k in sorted(records)] for split, records in by_split.items()}


def last_eval(workdir: str) -> tuple[dict, Optional[int]]:
  """(metrics, step) of the run's final evaluation; raises TableError if none."""
  result = _read_json(os.path.join(workdir, RESULT_NAME))
  if result is not None:
    if not isinstance(result.get('metrics'), Mapping):
      raise TableError(f'{workdir}/{RESULT_NAME}: no "metrics" mapping')
    return dict(result['metrics']), result.get('step')
  config = _read_json(os.path.join(workdir, CONFIG_NAME))
  if config is None or not os.path.exists(os.path.join(workdir, METRICS_NAME)):
    raise TableError(f'{workdir}: no {RESULT_NAME}, and no {CONFIG_NAME} + {METRICS_NAME} of a run')
  split = (config.get('eval') or {}).get('split')
  evals = read_metrics(workdir).get(split)
  if not evals:
    raise TableError(f'{workdir}: {METRICS_NAME} has no eval line for split {split!r} (not evaluated yet?)')
  last = evals[-1]
  return {k: v for k, v in last.items() if k not in ('step', 'split')}, int(last['step'])


def read_workdir(workdir: str) -> Optional[Result]:
  """The workdir's result, or None when it is tagged for no table."""
  results = read_results(workdir)
  return results[0] if results else None


def read_results(workdir: str) -> list[Result]:
  """The workdir's results: one cell, or a whole row when tagged with column
  `paper_results.ALL`; empty when it is tagged for no table."""
  tag = read_tag(workdir)
  if tag is None:
    return []
  metrics, step = last_eval(workdir)
  table = pr.TABLES[tag.table]
  columns = table.columns if tag.column == pr.ALL else (tag.column,)
  results = []
  for column in columns:
    metric, scale = table.metric_of(column)
    if metric not in metrics:
      raise TableError(f'{workdir}: table {tag.table!r} needs metric {metric!r}; the eval has {sorted(metrics)}')
    value = float(metrics[metric])
    if not math.isfinite(value):
      raise TableError(f'{workdir}: {metric} is {value}')
    results.append(Result(pr.Tag(tag.table, tag.row, column), scale * value, workdir, step))
  return results


Cells = dict[pr.Tag, list[Result]]


def collect(results: Iterable[Result]) -> Cells:
  """Results by cell, each also filed under the cells that are the same experiment."""
  cells: Cells = {}
  for result in results:
    for tag in pr.equivalent_cells(result.tag):
      cells.setdefault(tag, []).append(result)
  return cells


def _ours(cells: Cells, tag: pr.Tag) -> Optional[float]:
  found = cells.get(tag)
  return sum(r.value for r in found) / len(found) if found else None


def _fmt(x: Optional[float], signed: bool = False, decimals: int = 1) -> str:
  if x is None:
    return MISSING
  text = f'{x:+.{decimals}f}' if signed else f'{x:.{decimals}f}'
  return text.replace('-', '−')


def _derived(cells: Cells, table: pr.Table, row: pr.Row, column: str) -> Optional[float]:
  """A row whose static 'average_of' is 'A,B,C+D': the mean over its groups of
  our figures (a '+' group is averaged first); None unless every one is present."""
  groups = []
  for group in row.static['average_of'].split(','):
    values = [_ours(cells, pr.Tag(table.key, name, column)) for name in group.split('+')]
    if any(v is None for v in values):
      return None
    groups.append(sum(values) / len(values))
  return sum(groups) / len(groups)


def _cell_text(cells: Cells, tag: pr.Tag, decimals: int = 1) -> str:
  text = _fmt(_ours(cells, tag), decimals=decimals)
  n = len(cells.get(tag, ()))
  return f'{text} (n={n})' if n > 1 else text


def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return None if a is None or b is None else a - b


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return lines


def render_table(table: pr.Table, cells: Cells) -> str:
  """One table as Markdown: title, the grid, notes."""
  lines = [f'### {table.title}', '']
  if table.kind == 'permutation':
    header = ['model', 'raw', 'permuted', 'permuted − raw', 'paper (ImageNet): permuted − raw']
    rows = []
    for row in table.rows:
      raw, perm = (_ours(cells, pr.Tag(table.key, row.name, c)) for c in ('raw', 'permuted'))
      paper = pr.TABLES['perceiver_t2'].row(row.static['paper_row']).paper
      rows.append(
        [
          row.name,
          _cell_text(cells, pr.Tag(table.key, row.name, 'raw')),
          _cell_text(cells, pr.Tag(table.key, row.name, 'permuted')),
          _fmt(_diff(perm, raw), signed=True),
          _fmt(_diff(paper['permuted'], paper['raw']), signed=True),
        ]
      )
  else:
    multi = len(table.columns) > 1
    header = ['model']
    for c in table.columns:
      prefix = f'{c}: ' if multi else ''
      header += [f'{prefix}ours', f'{prefix}paper', f'{prefix}Δ']
    header += list(table.static_columns)
    rows = []
    for row in table.rows:
      line = [row.name]
      for c in table.columns:
        tag = pr.Tag(table.key, row.name, c)
        paper = row.paper.get(c)
        d = table.decimals
        if 'average_of' in row.static:
          ours = _derived(cells, table, row, c)
          line += [_fmt(ours, decimals=d), _fmt(paper, decimals=d), _fmt(_diff(ours, paper), signed=True, decimals=d)]
          continue
        line += [
          _cell_text(cells, tag, d),
          _fmt(paper, decimals=d),
          _fmt(_diff(_ours(cells, tag), paper), signed=True, decimals=d),
        ]
      line += [row.static.get(s, '') for s in table.static_columns]
      rows.append(line)
  lines += _markdown(header, rows)
  notes = [table.note] if table.note else []
  notes.append(
    f'{MISSING}: not run (or not reported by the paper). Δ = ours − paper.'
    if table.kind == 'paper'
    else f'{MISSING}: not run.'
  )
  for n in notes:
    lines += ['', f'_{n}_']
  return '\n'.join(lines) + '\n'


def sources(cells: Cells) -> str:
  """Which workdir each figure came from (so every number can be traced)."""
  seen = sorted({(r.tag, r.workdir, r.step) for rs in cells.values() for r in rs})
  lines = ['### Sources', '']
  lines += [
    f'- {t.table} / {t.row} / {t.column}: `{w}`' + (f' (step {s})' if s is not None else '') for t, w, s in seen
  ]
  return '\n'.join(lines) + '\n'


def make_tables(workdirs: Sequence[str], tables: Optional[Sequence[str]] = None) -> str:
  """Markdown of `tables` (default: every paper table, plus any other table
  that has results) from the results in `workdirs`."""
  results = []
  for workdir in workdirs:
    found = read_results(workdir)
    if not found:
      raise TableError(
        f'{workdir}: no table tag (config.table in {CONFIG_NAME}, {TAG_NAME} or '
        f'{RESULT_NAME}); tag it with scripts/make_tables.py --tag'
      )
    results.extend(found)
  cells = collect(results)
  if tables is None:
    used = {t.table for t in cells}
    tables = [k for k, t in pr.TABLES.items() if t.kind == 'paper' or k in used]
  unknown = sorted(set(tables) - set(pr.TABLES))
  if unknown:
    raise TableError(f'unknown table(s) {unknown}; known: {sorted(pr.TABLES)}')
  parts = [render_table(pr.TABLES[k], cells) for k in tables]
  if results:
    parts.append(sources(cells))
  return '\n'.join(parts)
