"""The account a conversion gives of every tensor it read and wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List


@dataclass
class ConversionReport:
    """What :func:`~mtl_ehrnet.convert.convert_checkpoint` did with a file.

    Attributes:
        source: the file.
        layout: the layout name (``"ehr"``, ``"higherhrnet"``, ``"hrnet_seg"``, ``"torchvision"``, ``"timm"``,
            ``"mtl_ehrnet"``).
        identified: what the file holds, in words.
        model: the architecture it was loaded into (``ModelConfig.describe()``).
        mapped: source key -> our key, for every tensor copied (possibly in part).
        folded: source conv bias -> the BatchNorm it was folded into.
        ignored: source key -> why it is not needed.
        defaulted: our keys the file does not carry and that were set to their default (BatchNorm's
            ``num_batches_tracked`` in files saved before PyTorch 0.4.1); never a weight.
        notes: how the file was unwrapped, which options the model was given.
    """

    source: str
    layout: str
    identified: str
    model: str
    mapped: Dict[str, str] = field(default_factory=dict)
    folded: Dict[str, str] = field(default_factory=dict)
    ignored: Dict[str, str] = field(default_factory=dict)
    defaulted: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self, examples: int = 3) -> str:
        """Human-readable report (what ``mtl-ehrnet convert`` prints)."""
        lines = [
            f"source:  {self.source}",
            f"layout:  {self.layout}: {self.identified}",
            f"model:   {self.model}",
            f"mapped:  {len(self.mapped)} tensors",
        ]
        if self.folded:
            lines.append(f"folded:  {len(self.folded)} conv biases into the BatchNorm that follows (exact)")
            lines += [f"           {k} -> {v}" for k, v in list(self.folded.items())[:examples]]
        for key, reason in self.ignored.items():
            lines.append(f"ignored: {key}: {reason}")
        if self.defaulted:
            lines.append(f"default: {len(self.defaulted)} BatchNorm step counters absent from the file, set to 0")
        lines += [f"note:    {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, object]:
        """Plain data (JSON- and ``weights_only``-safe)."""
        return {
            "source": self.source,
            "layout": self.layout,
            "identified": self.identified,
            "model": self.model,
            "mapped": dict(self.mapped),
            "folded": dict(self.folded),
            "ignored": dict(self.ignored),
            "defaulted": list(self.defaulted),
            "notes": list(self.notes),
        }
