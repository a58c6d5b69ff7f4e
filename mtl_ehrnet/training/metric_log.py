"""Run log: every loss term and metric as JSON lines (and TensorBoard when installed)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional


class MetricLog:
    """Appends records to ``DIR/log.jsonl``; mirrors scalars to TensorBoard when it is installed.

    Each record has a ``kind`` (``"train"``, ``"epoch"``, ``"val"``, ``"event"``), the epoch, the global step
    and named values.
    """

    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / "log.jsonl"
        self.enabled = enabled
        self._writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._writer = SummaryWriter(str(self.path.parent / "tensorboard"))
                except ImportError:  # TensorBoard is optional
                    self._writer = None

    def write(self, kind: str, epoch: int, step: int, values: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "epoch": epoch, "step": step}
        record.update({k: _plain(v) for k, v in values.items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(float(value)):
                    self._writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_log(path: Path, kind: Optional[str] = None) -> List[Dict[str, Any]]:
    """Records of a ``log.jsonl``, optionally of one kind."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
