"""The method comparison's report: validation.json, validation.html and a plot per class
(Bland-Altman beside Deming regression), in one folder. Every number is computed before the
first file is written, and each file is written atomically."""

from __future__ import annotations

import html
import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from statsmodels.graphics.agreement import mean_diff_plot  # noqa: E402

from marrowdiff.classes import Vocabulary  # noqa: E402
from marrowdiff.fileio import write_bytes, write_json, write_text  # noqa: E402

DEMONSTRATION = (
    "A demonstration, not a validation: the reference was made by the demo from the public "
    "archive's labels with simulated reviewers, not by this laboratory's technologists on its "
    "own slides."
)


def plot_class(row: dict, per_case: list[dict], k: int) -> bytes:
    """One class: Bland-Altman (model - reference against their mean) and the Deming line."""
    ref = np.array([case["classes"][k]["reference_percent"] for case in per_case])
    mod = np.array([case["classes"][k]["model_percent"] for case in per_case])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    if len(ref) >= 2:
        with warnings.catch_warnings():  # every difference the same: a flat band, said so
            warnings.simplefilter("ignore", UserWarning)
            mean_diff_plot(mod, ref, ax=left, sd_limit=1.96)  # statsmodels: bias and limits
    left.set_title(f"{row['name']}: model - reference")
    left.set_xlabel("mean of the two (%)")
    left.set_ylabel("difference (percentage points)")
    right.scatter(ref, mod, s=18)
    top = max(1.0, float(np.max(np.r_[ref, mod])) * 1.1)
    right.plot([0, top], [0, top], color="0.6", lw=1, label="identity")
    d = row["deming"]
    if d["slope"] is not None:
        sign = "-" if d["intercept"] < 0 else "+"
        line = f"Deming: {d['slope']:.2f} x {sign} {abs(d['intercept']):.2f}"
        right.plot([0, top], [d["intercept"], d["intercept"] + d["slope"] * top], label=line)
    right.set_xlim(0, top)
    right.set_ylim(0, top)
    right.set_xlabel("reference (%)")
    right.set_ylabel("model (%)")
    right.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_validation(out: Path, result: dict, vocabulary: Vocabulary) -> None:
    """Write the report folder from `result` (`compare` plus `about`)."""
    plots = {
        row["class"]: plot_class(row, result["per_case"], k)
        for k, row in enumerate(result["per_class"])
    }
    page = render(result, vocabulary)
    for code, png in plots.items():
        write_bytes(out / "plots" / f"{code}.png", png)
    write_json(out / "validation.json", result)
    write_text(out / "validation.html", page)


def _f(value, digits=2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(values) -> str:
    return "" if not values else f" ({values[0]:.2f} to {values[1]:.2f})"


def render(result: dict, vocabulary: Vocabulary) -> str:
    esc = html.escape
    about = result["about"]
    name = {c: vocabulary[c].name for c in vocabulary.codes}
    parts = [
        "<!doctype html><meta charset='utf-8'><title>marrowdiff method comparison</title>",
        "<style>body{font:14px sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
        "td.n{text-align:right}.banner{background:#fde9c8;border:2px solid #d08a00;padding:1em;"
        "font-weight:bold}.out{background:#fbe3e3}.ok{background:#e3f5e3}</style>",
        "<h1>Method comparison: the model against the laboratory's reviewed reference</h1>",
    ]
    if about.get("demonstration"):
        parts.append(f"<p class='banner'>{esc(DEMONSTRATION)}</p>")
    for warning in result.get("warnings", []):
        parts.append(f"<p class='banner'>{esc(warning)}</p>")
    parts.append("<table>")
    for label, value in (
        ("model", about["model"]),
        ("model sha256", about["model_sha256"] or "unknown"),
        ("date", about["date"]),
        ("cases", ", ".join(about["cases"])),
        ("reviewers", ", ".join(about["reviewers"]) or "none named"),
        ("signed by", ", ".join(about["signed_by"])),
        ("cells", str(result["cells"]["cells"])),
        ("vocabulary", about["vocabulary"]),
    ):
        parts.append(f"<tr><th>{esc(label)}</th><td>{esc(str(value))}</td></tr>")
    parts.append("</table>")

    parts.append(
        "<h2>Per class, over cases</h2><p>Reference: the consensus of the reviewers (an "
        "adjudicator's decision where they disagreed). Bias and 95% limits of agreement of "
        "model minus reference (Bland-Altman); Deming regression of the model on the "
        "reference (95% intervals by the jackknife). <i>Within the laboratory's own "
        "variation</i>: the model's kappa with the consensus (this class or not) is not below "
        "the reviewers' kappa with each other.</p>"
    )
    parts.append(
        "<table><tr><th>class</th><th>reference %</th><th>model %</th><th>cases inside "
        "Rümke's 95% interval</th><th>bias</th><th>limits of agreement</th><th>Deming slope"
        "</th><th>Deming intercept</th><th>kappa: model</th><th>kappa: reviewers</th>"
        "<th>within variation</th></tr>"
    )
    for row in result["per_class"]:
        ba, d = row["bland_altman"], row["deming"]
        w = result["within_variation"][row["class"]]
        verdict = {True: "yes", False: "no", None: "n/a"}[w["within"]]
        cls = {True: "ok", False: "out", None: ""}[w["within"]]
        parts.append(
            f"<tr><td>{esc(row['name'])}</td><td class='n'>{row['reference_mean']:.1f}</td>"
            f"<td class='n'>{row['model_mean']:.1f}</td>"
            f"<td class='n'>{row['cases_inside']} of {row['cases']}</td>"
            f"<td class='n'>{_f(ba['bias'])}</td><td class='n'>{_f(ba['low'])} to "
            f"{_f(ba['high'])}</td><td class='n'>{_f(d['slope'])}{_ci(d['slope_ci'])}</td>"
            f"<td class='n'>{_f(d['intercept'])}{_ci(d['intercept_ci'])}</td>"
            f"<td class='n'>{_f(w['model_kappa'])}</td><td class='n'>"
            f"{_f(w['reviewers_kappa'])}</td><td class='{cls}'>{verdict}</td></tr>"
        )
    parts.append("</table>")

    cells, among = result["cells"], result["reviewers"]
    parts.append(
        f"<h2>Cell by cell</h2><p>The model agrees with the consensus on "
        f"{_f(cells['percent'], 1)}% of {cells['cells']} cells (adjacent stage: "
        f"{_f(cells['adjacent_percent'], 1)}%), Cohen's kappa {_f(cells['kappa'])}."
    )
    if among:
        parts.append(
            f" The reviewers agree with each other on {_f(among['percent'], 1)}% of "
            f"{among['cells']} pairs of verdicts, kappa {_f(among['kappa'])}.</p>"
        )
    else:
        parts.append(
            " No cell was reviewed twice: the reviewers' own variation is unknown, so no "
            "class can be judged within it. Review cases blind by two people.</p>"
        )
    labels = cells["labels"]
    parts.append("<table><tr><th>consensus \\ model</th>")
    parts += [f"<th>{esc(vocabulary[c].abbrev if c in name else c)}</th>" for c in labels]
    parts.append("</tr>")
    for label, row in zip(labels, cells["confusion"], strict=True):
        parts.append(f"<tr><th>{esc(name.get(label, label))}</th>")
        parts += [f"<td class='n'>{v or ''}</td>" for v in row]
        parts.append("</tr>")
    parts.append("</table>")

    parts.append(
        "<h2>Per case</h2><p>Each class's reference percentage with its 95% interval for "
        "the number of cells counted (exact binomial, as in Rümke's table), and the model's "
        "percentage: red where it lies outside.</p>"
    )
    for case in result["per_case"]:
        parts.append(
            f"<h3>{esc(case['case'])}</h3><p>{case['reference_cells']} cells in the "
            f"reference differential, {case['model_cells']} counted by the model.</p><table>"
            "<tr><th>class</th><th>reference %</th><th>95% interval</th><th>model %</th></tr>"
        )
        for row in case["classes"]:
            cls = "ok" if row["inside"] else "out"
            parts.append(
                f"<tr><td>{esc(name.get(row['class'], row['class']))}</td>"
                f"<td class='n'>{row['reference_percent']:.1f}</td><td class='n'>"
                f"{row['low']:.1f}-{row['high']:.1f}</td><td class='n {cls}'>"
                f"{row['model_percent']:.1f}</td></tr>"
            )
        parts.append("</table>")

    parts.append("<h2>Plots</h2>")
    for row in result["per_class"]:
        parts.append(
            f"<h3>{esc(row['name'])}</h3><img src='plots/{esc(row['class'])}.png' "
            f"alt='{esc(row['name'])}: Bland-Altman and Deming'>"
        )
    parts.append(
        "<p>Signed by the laboratory director: ____________________ &nbsp; date: __________</p>"
    )
    return "".join(parts)
