"""The one place every DRAW hyperparameter lives. Saved with every checkpoint."""

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class DrawConfig:
    height: int = 28  # image rows (B in the paper)
    width: int = 28  # image columns (A in the paper)
    T: int = 64  # number of glimpses / canvas updates
    read_n: int = 2  # read attention grid is read_n x read_n
    write_n: int = 5  # write attention patch is write_n x write_n
    enc_size: int = 256  # encoder LSTM units
    dec_size: int = 256  # decoder LSTM units
    z_size: int = 100  # latent dimensions per step
    attention: bool = True  # False: read [x, x_hat], write W(h_dec) over the whole image
    beta: float = 1.0  # KL weight; 1 is the paper, > 1 is a beta-VAE

    def __post_init__(self):
        for name in ("height", "width", "T", "enc_size", "dec_size", "z_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"DrawConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.attention and (self.read_n < 2 or self.write_n < 2):
            raise ValueError("read_n and write_n must be >= 2 (the stride delta divides by N - 1)")
        if not self.beta > 0:
            raise ValueError(f"DrawConfig.beta must be > 0, got {self.beta}")

    @property
    def image_size(self) -> int:
        return self.height * self.width

    @property
    def read_size(self) -> int:
        """Length of the read vector r_t fed to the encoder: [glimpse of x, glimpse of x_hat]."""
        return 2 * (self.read_n**2 if self.attention else self.image_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DrawConfig":
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown DrawConfig keys: {sorted(unknown)}")
        return cls(**d)
