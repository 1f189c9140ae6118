"""Cell-type vocabulary: code, display name, lineage and maturation order, kept as data.

The vocabulary is the single source of truth for which classes exist and in which (clinical)
order they are listed. Built-in vocabularies live in `vocabularies/*.toml`; users give their own
as a TOML or JSON file of the same shape (see docs/data.md).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from marrowdiff.errors import UserError

LINEAGES = ("erythroid", "myeloid", "lymphoid", "other")


class VocabularyError(UserError, ValueError):
    """A vocabulary file is malformed, or labels do not fit the vocabulary."""


@dataclass(frozen=True)
class CellType:
    code: str  # stable identifier used in files and checkpoints
    name: str  # display name for reports
    lineage: str  # one of LINEAGES
    order: int  # maturation order within the lineage, 1 = most immature
    abbrev: str = ""  # short label for dense figures
    aliases: tuple[str, ...] = ()  # other labels data sets use for this class (folder names...)
    # A coarse label: one of these fine classes, not which (e.g. an erythroblast of unknown
    # stage). A coarse class is a label a data set may carry, never a model output.
    members: tuple[str, ...] = ()
    counted: bool = True  # False: named and shown, but left out of the differential (platelets)

    @property
    def coarse(self) -> bool:
        return bool(self.members)


LABEL_SCHEMES = ("folder", "filename-prefix")
# A label "A|B": the cell lies between two neighbouring stages A and B (an adjudicator's
# verdict, `web.store`); a coarse label of those two, like a vocabulary's own coarse classes.
BETWEEN = "|"


@dataclass(frozen=True)
class Vocabulary:
    name: str
    classes: tuple[CellType, ...]
    description: str = ""
    # How a class-folder data set names a file's class: its class folder, or the start of its
    # file name up to the first "_" (PBC: ig/MY_1234.jpg is a myelocyte).
    label_from: str = "folder"
    # The centred fraction of each image side that is the cell's patch (1.0: the whole image);
    # a data set whose images show the cell small among others is cropped to the archive's scale.
    crop: float = 1.0
    _lookup: dict[str, str] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        lookup: dict[str, str] = {}
        for cell in self.classes:
            if cell.lineage not in LINEAGES:
                raise VocabularyError(
                    f"vocabulary {self.name!r}: class {cell.code!r} has lineage {cell.lineage!r}; "
                    f"use one of {', '.join(LINEAGES)}"
                )
            for label in (cell.code, cell.name, *cell.aliases):
                key = _normalise(label)
                if lookup.get(key, cell.code) != cell.code:
                    raise VocabularyError(
                        f"vocabulary {self.name!r}: label {label!r} names both "
                        f"{lookup[key]!r} and {cell.code!r}; make it an alias of one only"
                    )
                lookup[key] = cell.code
        if len({c.code for c in self.classes}) != len(self.classes):
            raise VocabularyError(f"vocabulary {self.name!r}: class codes must be unique")
        fine = {c.code for c in self.classes if not c.coarse}
        for cell in self.classes:
            wrong = [m for m in cell.members if m not in fine]
            if wrong:
                raise VocabularyError(
                    f"vocabulary {self.name!r}: coarse class {cell.code!r} has member(s) "
                    f"{wrong} that are not fine classes of the vocabulary; list fine codes only"
                )
        if self.label_from not in LABEL_SCHEMES:
            raise VocabularyError(
                f"vocabulary {self.name!r}: label_from {self.label_from!r}; use one of "
                f"{', '.join(LABEL_SCHEMES)}"
            )
        if not 0 < self.crop <= 1:
            raise VocabularyError(f"vocabulary {self.name!r}: crop {self.crop} must be in (0, 1]")
        object.__setattr__(self, "_lookup", lookup)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.classes)

    @property
    def fine_codes(self) -> tuple[str, ...]:
        """The classes a model can output, in clinical order: every class but the coarse ones."""
        return tuple(c.code for c in self.classes if not c.coarse)

    def between(self, a: str, b: str) -> str:
        """The label of a cell between two neighbouring stages ("myelocyte|metamyelocyte",
        the less mature first); refuses stages that are not neighbours of one lineage."""
        if a == b or not self.adjacent(a, b) or self[a].coarse or self[b].coarse:
            raise VocabularyError(
                f"{a!r} and {b!r} are not neighbouring stages of one lineage in vocabulary "
                f"{self.name!r}: a cell can only lie between neighbours"
            )
        first, second = sorted((a, b), key=lambda code: self[code].order)
        return f"{first}{BETWEEN}{second}"

    def members_of(self, code: str) -> tuple[str, ...]:
        """The fine classes a label stands for: its members if coarse, else itself."""
        cell = self[code]
        return cell.members or (cell.code,)

    def counted(self, code: str) -> bool:
        """Whether a class enters the differential (a platelet is named but not counted)."""
        return self[code].counted

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, code: str) -> CellType:
        if BETWEEN in code:  # "A|B": a coarse label of two neighbouring stages
            a, b = code.split(BETWEEN, 1)
            first, second = self[a], self[b]
            return CellType(
                code=code,
                name=f"between {first.name} and {second.name}",
                lineage=first.lineage,
                order=first.order,
                abbrev=f"{first.abbrev or a}/{second.abbrev or b}",
                members=(a, b),
                counted=first.counted,
            )
        return self.classes[self.index(code)]

    def index(self, code: str) -> int:
        """Position of a class code in clinical order."""
        try:
            return self.codes.index(code)
        except ValueError:
            raise KeyError(f"{code!r} is not a class of vocabulary {self.name!r}") from None

    def resolve(self, label: str) -> str | None:
        """The class code a label (code, name or alias, any case) stands for, or None. "A|B"
        of two neighbouring stages stands for the cells between them (`between`)."""
        if BETWEEN in str(label):
            parts = [self._lookup.get(_normalise(part)) for part in str(label).split(BETWEEN)]
            if len(parts) != 2 or None in parts:
                return None
            try:
                return self.between(*parts)
            except VocabularyError:
                return None
        return self._lookup.get(_normalise(label))

    def map_labels(self, labels: Iterable[str], where: str = "the data set") -> list[str]:
        """Map raw labels to codes; raise one error listing every label that does not fit."""
        labels = list(labels)
        codes = [self.resolve(label) for label in labels]
        unknown = sorted({lab for lab, code in zip(labels, codes, strict=True) if code is None})
        if unknown:
            raise VocabularyError(
                f"{len(unknown)} label(s) in {where} are not in vocabulary {self.name!r}: "
                f"{', '.join(map(repr, unknown))}. Known labels: {', '.join(self.codes)}. "
                "Fix: add them as `aliases` in a vocabulary file and pass --vocab FILE, "
                "or pass --vocab infer to use the data set's own labels."
            )
        return codes

    def adjacent(self, a: str, b: str) -> bool:
        """True when a and b are the same class or neighbouring stages of one lineage.

        Lineage "other" has no maturation sequence, so its classes neighbour nothing.
        """
        ca, cb = self[a], self[b]
        return a == b or (ca.lineage == cb.lineage != "other" and abs(ca.order - cb.order) == 1)

    def lineage_of(self, code: str) -> str:
        return self[code].lineage

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "description": self.description,
            "classes": [
                asdict(c) | {"aliases": list(c.aliases), "members": list(c.members)}
                for c in self.classes
            ],
        }
        if self.label_from != "folder":
            out["label_from"] = self.label_from
        if self.crop != 1.0:
            out["crop"] = self.crop
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> Vocabulary:
        try:
            classes = tuple(
                CellType(
                    code=str(c["code"]),
                    name=str(c.get("name", c["code"])),
                    lineage=str(c.get("lineage", "other")),
                    order=int(c.get("order", i + 1)),
                    abbrev=str(c.get("abbrev", "")),
                    aliases=tuple(str(a) for a in c.get("aliases", ())),
                    members=tuple(str(m) for m in c.get("members", ())),
                    counted=bool(c.get("counted", True)),
                )
                for i, c in enumerate(data["classes"])
            )
            crop = float(data.get("crop", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise VocabularyError(
                f"{source}: not a vocabulary ({exc!r}); it needs a `classes` list whose entries "
                "have at least `code` (see docs/data.md)"
            ) from None
        if not classes:
            raise VocabularyError(f"{source}: the vocabulary has no classes")
        return cls(
            name=str(data.get("name", Path(source).stem)),
            classes=classes,
            description=str(data.get("description", "")),
            label_from=str(data.get("label_from", "folder")),
            crop=crop,
        )


def vocabulary_template(vocabulary: Vocabulary) -> str:
    """A vocabulary as a TOML file for a person to edit, with comments on what to fill in;
    `load_vocabulary` reads it back as the same vocabulary."""

    def text(value: str) -> str:  # a TOML basic string: JSON's escapes are TOML's
        return json.dumps(value, ensure_ascii=False)

    lines = [f"name = {text(vocabulary.name)}", f"description = {text(vocabulary.description)}"]
    if vocabulary.label_from != "folder":
        lines.append(f"label_from = {text(vocabulary.label_from)}")
    if vocabulary.crop != 1.0:
        lines.append(f"crop = {vocabulary.crop}")
    for cell in vocabulary.classes:
        lines += [
            "",
            "[[classes]]",
            f"code = {text(cell.code)}",
            f"name = {text(cell.name)}",
            f"lineage = {text(cell.lineage)}  # {', '.join(LINEAGES)}",
            f"order = {cell.order}  # maturation order within the lineage, 1 = most immature",
            f"abbrev = {text(cell.abbrev)}",
            f"aliases = [{', '.join(text(a) for a in cell.aliases)}]",
        ]
        if cell.members:
            lines.append(f"members = [{', '.join(text(m) for m in cell.members)}]  # coarse")
        if not cell.counted:
            lines.append("counted = false  # named, but left out of the differential")
    return "\n".join(lines) + "\n"


def _normalise(label: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(label).strip().lower())


def builtin_vocabularies() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files("marrowdiff.vocabularies").iterdir()
        if p.name.endswith(".toml")
    )


def load_vocabulary(spec: str | Path = "choi2017") -> Vocabulary:
    """A built-in vocabulary by name, or a .toml/.json vocabulary file. A file may start from
    another vocabulary (`base = "marrow14"`: its classes, with this file's other keys)."""
    spec = str(spec)
    if spec in builtin_vocabularies():
        text = resources.files("marrowdiff.vocabularies").joinpath(f"{spec}.toml").read_text()
        return _with_base(tomllib.loads(text), spec)
    path = Path(spec)
    if not path.is_file():
        raise VocabularyError(
            f"vocabulary {spec!r} is neither a built-in ({', '.join(builtin_vocabularies())}) "
            "nor an existing .toml/.json file"
        )
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"{path}: cannot parse the vocabulary file: {exc}") from None
    return _with_base(data, str(path))


def _with_base(data: dict, source: str) -> Vocabulary:
    if "base" in data:
        base = load_vocabulary(data.pop("base")).to_dict()
        data = base | {"name": Path(source).stem} | data
    return Vocabulary.from_dict(data, source=source)


def infer_vocabulary(labels: Iterable[str], name: str = "inferred") -> Vocabulary:
    """A vocabulary made of the labels found in a data set, sorted, lineage 'other'."""
    found = sorted(set(labels), key=lambda s: (len(s), s) if s.isdigit() else (1 << 30, s))
    return Vocabulary(
        name=name,
        classes=tuple(
            CellType(code=lab, name=lab, lineage="other", order=i + 1)
            for i, lab in enumerate(found)
        ),
    )
