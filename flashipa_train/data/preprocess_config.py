"""Filter and parsing settings of the preprocessor; each field is also a CLI flag and a config key."""

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class PreprocessConfig:
    """Which chains become training examples. Defaults follow FrameFlow-style training sets.

    Args:
        model: model number read from multi-model files (NMR ensembles); 1 = the first model.
        altloc: 'occupancy' keeps the highest-occupancy alternate location of each residue,
            'first' the first one listed.
        min_length: shortest accepted chain, in residues.
        max_length: longest accepted chain, in residues.
        max_resolution: worst accepted resolution in Å.
        allow_missing_resolution: accept files whose header gives no resolution (NMR, models).
        max_missing_backbone_fraction: largest accepted fraction of missing N/CA/C/O atoms over the
            chain's residues.
        max_coil_fraction: largest accepted fraction of P-SEA coil residues.
        chain_break_distance: consecutive CA-CA distance (Å) above which a chain break is recorded.
        split_chain_breaks: store each break-free segment as its own example (each filtered alone).
    """

    model: int = 1
    altloc: str = "occupancy"
    min_length: int = 40
    max_length: int = 512
    max_resolution: float = 5.0
    allow_missing_resolution: bool = True
    max_missing_backbone_fraction: float = 0.1
    max_coil_fraction: float = 0.5
    chain_break_distance: float = 4.2
    split_chain_breaks: bool = False

    def __post_init__(self):
        if self.model < 1:
            raise ValueError(f"model={self.model} (--model): model numbers start at 1")
        if self.altloc not in ("occupancy", "first"):
            raise ValueError(f"altloc={self.altloc!r} (--altloc): use 'occupancy' or 'first'")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(
                f"min_length={self.min_length}, max_length={self.max_length} (--min-length, --max-length, or "
                f"data.preprocess.*): need 1 <= min_length <= max_length"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessConfig":
        """Build from a mapping (e.g. a Hydra config node); unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown preprocess settings {unknown}; known: {sorted(known)}")
        return cls(**dict(values))
