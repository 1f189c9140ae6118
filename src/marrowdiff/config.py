"""Run configuration: frozen dataclasses, named presets, TOML overrides, then the command line."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from marrowdiff.errors import UserError
from marrowdiff.preprocess import Geometry


class ConfigError(UserError, ValueError):
    """A configuration file or option that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "effnet_lite0"  # a key of MODELS
    num_classes: int = 10
    input_size: int = 96  # square input side, px
    width: float = 1.0  # channel multiplier (vgg*)
    dropout: float = 0.4  # between conv layers (vgg*), before the classifier (effnet)
    fc_dim: int = 512  # hidden units of the two hidden fully connected layers (vgg*)
    pretrained: bool = True  # load ImageNet weights where the architecture has them
    extra: dict = field(default_factory=dict)  # architecture-specific options

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "balanced-random"  # a key of training.recipes.RECIPES
    epochs: int = 12
    batch_size: int = 40  # the paper's
    optimizer: str = "sgd"  # "sgd" (momentum, as the paper) or "adamw"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine" (with warm-up) or "inverse": lr / (1 + decay * step)
    lr_decay: float = 1e-4  # per optimiser step, for "inverse" (Torch7's learningRateDecay)
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    colour: str = "rgb"  # input colour space: "rgb" or "yuv" (the paper's)
    colour_jitter: float = 0.1  # per-channel gain jitter, for stain and white-balance variation
    stain_jitter: float = 0.0  # HED stain scale and shift, U[-s, s] (training.augment); 0: off
    light_jitter: float = 0.0  # brightness, contrast, saturation, gamma, x U[1-a, 1+a]; 0: off
    blur_jitter: float = 0.0  # Gaussian blur of standard deviation U[0, b] px; 0: off
    jpeg_jitter: int = 0  # JPEG round trip at quality U{q..95}; 0: off
    scale_jitter: float = 0.0  # zoom about the centre by 1 + U[-z, z]; 0: off
    # the share of views whose surroundings (outside a disc about the cell) are replaced by
    # plain plasma, so that a cell is classified by itself, not by its neighbours; 0: off
    context_jitter: float = 0.0
    ema: float = 0.0  # per-step decay of a moving average of the weights, kept as the model; 0: off
    seed: int = 0
    fold: int = 0  # train on this CV fold's train part, validate on its val part; -1: all, no val
    classes: tuple[str, ...] = ()  # train on these classes only (a local model); () = all


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    geometry: Geometry = field(default_factory=Geometry)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {
            "model": asdict(self.model),
            "geometry": asdict(self.geometry),
            "train": asdict(self.train),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(
            model=_build(ModelConfig, d.get("model", {})),
            geometry=_build(Geometry, d.get("geometry", {})),
            train=_build(TrainConfig, d.get("train", {})),
        )


# The default: ImageNet EfficientNet-Lite0 fine-tuned at native 144 px patch scale on the
# centre 112 px, class-balanced random re-crops and rotations, RGB. The stem and first three
# blocks stay as ImageNet trained them, which pays for most of the extra epochs.
_DEFAULT = RunConfig(
    model=ModelConfig(
        name="effnet_lite0", input_size=112, dropout=0.3, pretrained=True, extra={"freeze": 3}
    ),
    geometry=Geometry(input_size=112, field=112 / 144, max_shift=1 / 12, white_balance=True),
    train=TrainConfig(epochs=20),
)

PRESETS: dict[str, RunConfig] = {
    "default": _DEFAULT,
    # The default at 96 px (the same 112 px of each patch, downscaled): 1.4x the network's
    # cells/s, a few points less accurate (docs/BENCHMARKS.md).
    "fast": replace(
        _DEFAULT,
        model=replace(_DEFAULT.model, input_size=96),
        geometry=replace(_DEFAULT.geometry, input_size=96),
    ),
    # For a model that will meet other laboratories' images before any of their cells train it:
    # the default with the stain and light jitter chosen on PBC's validation cells. A trade
    # (docs/BENCHMARKS.md, "Another laboratory's cells"): archive -> PBC accuracy 0.27 -> 0.37,
    # the archive's own 6-fold CV 0.762 -> 0.740 with TTA (0.753 -> 0.702 from the centre view).
    "robust": replace(_DEFAULT, train=replace(_DEFAULT.train, stain_jitter=0.05, light_jitter=0.1)),
    # A laboratory's own verified cells (the review station's export), from a trained model
    # (`--init`): a quarter of the learning rate, half the epochs (docs/training.md, "Your own
    # cells").
    "adapt": replace(_DEFAULT, train=replace(_DEFAULT.train, lr=0.005, epochs=10)),
    # Choi et al. 2017: VGG-16 with batch norm from scratch, YUV, 96 px, AG+OS 600, SGD with
    # learning-rate decay, 150 epochs, batch 40.
    "paper": RunConfig(
        model=ModelConfig(name="vgg16", input_size=96, dropout=0.4, fc_dim=512, pretrained=False),
        geometry=Geometry(input_size=96, field=1.0, max_shift=1 / 12),
        train=TrainConfig(
            recipe="augmented+oversampled-600",
            epochs=150,
            optimizer="sgd",
            lr=0.01,
            momentum=0.9,
            weight_decay=5e-4,
            schedule="inverse",
            lr_decay=1e-4,
            warmup_epochs=0,
            label_smoothing=0.0,
            colour="yuv",
            colour_jitter=0.0,
        ),
    ),
    # Smoke tests: a narrow VGG for a few epochs.
    "quick": RunConfig(
        model=ModelConfig(
            name="vgg11", input_size=48, width=0.25, dropout=0.1, fc_dim=256, pretrained=False
        ),
        geometry=Geometry(input_size=48, field=1.0, max_shift=1 / 12),
        train=TrainConfig(
            recipe="balanced-random",
            epochs=3,
            optimizer="adamw",
            lr=0.002,
            weight_decay=0.01,
            warmup_epochs=0,
            colour="yuv",
        ),
    ),
}


def load_config(preset_or_file: str | Path | None = None, **overrides) -> RunConfig:
    """A preset name or a TOML file ([model], [geometry], [train] tables, optional
    `base = "preset"`), then keyword overrides of the form section__field=value. A table
    value such as `extra` is merged key by key into the preset's."""
    spec = str(preset_or_file or "default")
    if spec in PRESETS:
        config = PRESETS[spec]
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"config {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file"
            )
        data = _read_toml(path)
        data.pop("also", None)  # other data sets to train on: `also_sources`, not the config
        config = PRESETS[data.pop("base", "default")]
        merged = config.to_dict()
        for section, values in data.items():
            if section not in merged:
                raise ConfigError(
                    f"{path}: unknown section [{section}]; use model, geometry, train"
                )
            for name, value in values.items():
                if isinstance(value, dict) and isinstance(merged[section].get(name), dict):
                    value = merged[section][name] | value  # extra: add to the preset's
                merged[section][name] = value
        config = RunConfig.from_dict(merged)
    for key, value in overrides.items():
        if value is None:
            continue
        section, name = key.split("__")
        config = replace(config, **{section: replace(getattr(config, section), **{name: value})})
    return config


ALSO_KEYS = {"data", "vocab", "weight", "splits"}


def also_sources(preset_or_file: str | Path | None) -> list[dict]:
    """The `[[also]]` tables of a TOML config: other data sets a run trains on beside its own,
    each {data, vocab, weight, splits}; paths (and a vocabulary file) relative to the file.
    [] for a preset."""
    spec = str(preset_or_file or "default")
    if spec in PRESETS:
        return []
    path = Path(spec)
    entries = _read_toml(path).get("also", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: `also` must be a list of [[also]] tables")
    out = []
    for k, entry in enumerate(entries, start=1):
        unknown = set(entry) - ALSO_KEYS
        if unknown or "data" not in entry:
            raise ConfigError(
                f"{path}: [[also]] table {k} needs `data` and takes only "
                f"{', '.join(sorted(ALSO_KEYS))} (found {', '.join(sorted(entry))})"
            )
        vocab = entry.get("vocab")
        if vocab and (path.parent / vocab).is_file():  # a vocabulary file beside the config
            vocab = str(path.parent / vocab)
        out.append(
            {
                "data": path.parent / entry["data"],
                "vocab": vocab,
                "weight": float(entry.get("weight", 1.0)),
                "splits": path.parent / entry["splits"] if "splits" in entry else None,
            }
        )
    return out


def also_entries(
    data: list[Path],
    vocabs: list[str],
    weights: list[float],
    splits: list[Path],
    config_file: str | Path | None = None,
) -> list[dict]:
    """The other data sets a run trains on, each {data, vocab, weight, splits}: from the
    command line's --also lists (the others given once per --also, in order, or not at all),
    or else from the config file's [[also]] tables; never both."""
    n = len(data)
    for option, given in (
        ("--also-vocab", vocabs),
        ("--also-weight", weights),
        ("--also-splits", splits),
    ):
        if given and len(given) != n:
            raise ConfigError(
                f"{option} was given {len(given)} time(s) for {n} --also data set(s); give it "
                "once per --also, in the same order, or not at all"
            )
    entries = [
        {
            "data": path,
            "vocab": vocabs[i] if vocabs else None,
            "weight": weights[i] if weights else 1.0,
            "splits": splits[i] if splits else None,
        }
        for i, path in enumerate(data)
    ]
    from_file = also_sources(config_file)
    if entries and from_file:
        raise ConfigError(
            f"{config_file} lists [[also]] data sets and --also was given too: use one or the other"
        )
    for entry in entries or from_file:
        if not entry["weight"] > 0:
            raise ConfigError(
                f"{entry['data']}: weight {entry['weight']}; give a weight above 0, or leave "
                "the data set out"
            )
    return entries or from_file


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not a TOML file ({error}); see docs/training.md") from None


def _build(cls, values: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    fixed = {
        k: tuple(v) if isinstance(v, list) and "tuple" in str(types[k]) else v
        for k, v in values.items()
    }
    return cls(**fixed)
