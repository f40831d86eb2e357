"""A case's printable report, as a PDF: sample and dates, the differential, each finding with its cells' thumbnails,
who classified (the model: run, weights SHA-256, backend), who decided the cells and who signed, the versions, and the
disclaimers. A case that is not signed yet gets a report too, marked "NOT SIGNED — preliminary" on every page.

    pdf = case_report_pdf(report_facts(db, case_id), store.images.read)      # bytes, b"%PDF-…"

Why ReportLab: it is pure Python (wheels with optional C speed-ups), maintained, and needs no system library, so the
server's install stays ``pip install`` on any machine. WeasyPrint (HTML to PDF) would need Pango and its fonts from the
system's packages; printing a page with headless Chromium would make the server depend on a browser, its updates and
its sandbox. Text is set in the PDF's standard Helvetica (no font file embedded): a character it lacks (outside
Windows-1252) shows as a blank, so sample IDs in other scripts print incompletely; the downloads' names and the LIS
messages carry them whole.

Thumbnails are the stored images (the exact bytes the model classified), decoded by the one image loader
(neunn.data.image_io) and downscaled with Pillow; at most MAX_THUMBNAILS cells are shown per finding (the report says
how many more the case holds).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from neunn.cases.report_facts import HOW, class_name
from neunn.data.image_io import load_rgb

MAX_THUMBNAILS = 48  # per finding
THUMB_PT = 17 * mm  # printed size of a thumbnail's longer side
THUMB_PX = 128  # pixels of its longer side: about 190 dpi at that size, sharp on paper, small in the file
PER_ROW = 8
PRELIMINARY = "NOT SIGNED \u2014 preliminary"
_RED = colors.HexColor("#b00020")
_GREY = colors.HexColor("#555555")
_GRID = colors.HexColor("#bbbbbb")


def _when(stamp: str | None) -> str:
    """'2026-04-12T10:30:05.123Z' → '2026-04-12 10:30 UTC'."""
    return f"{stamp[:10]} {stamp[11:16]} UTC" if stamp else "\u2013"


def _share(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.1f} %"


def thumbnail_jpeg(data: bytes, size: int = THUMB_PX) -> tuple[bytes, int, int]:
    """A stored image downscaled to ``size`` pixels on its longer side (never enlarged): JPEG bytes, width, height."""
    image = load_rgb(data, draft_size=size).image
    image.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue(), image.width, image.height


class _Styles:
    def __init__(self) -> None:
        base = getSampleStyleSheet()
        self.body = ParagraphStyle("body", parent=base["BodyText"], fontName="Helvetica", fontSize=9, leading=11.5)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=7.5, leading=9)
        self.tiny = ParagraphStyle("tiny", parent=self.body, fontSize=5.5, leading=6.5, alignment=1)
        self.title = ParagraphStyle("title", parent=base["Title"], fontName="Helvetica-Bold", fontSize=16,
                                    leading=20, alignment=0, spaceAfter=4)
        self.h2 = ParagraphStyle("h2", parent=base["Heading2"], fontName="Helvetica-Bold", fontSize=11.5,
                                 leading=14, spaceBefore=8, spaceAfter=3)
        self.h3 = ParagraphStyle("h3", parent=base["Heading3"], fontName="Helvetica-Bold", fontSize=9.5,
                                 leading=12, spaceBefore=5, spaceAfter=2)
        self.alert = ParagraphStyle("alert", parent=self.body, textColor=_RED, fontName="Helvetica-Bold")


def _table(rows: list[list[Any]], widths: list[float], *, header: bool = True,
           numeric_from: int | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [("FONT", (0, 0), (-1, -1), "Helvetica", 8.5), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("LINEBELOW", (0, 0), (-1, -1), 0.25, _GRID), ("TOPPADDING", (0, 0), (-1, -1), 2),
             ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if header:
        style += [("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5), ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black)]
    if numeric_from is not None:
        style.append(("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"))
    table.setStyle(TableStyle(style))
    return table


def _facts_table(facts: dict[str, Any], s: _Styles) -> Table:
    case = facts["case"]
    signed = (f"{_when(case['signed_at'])} by {escape(case['signed_by'] or '?')}" if facts["signed"]
              else f'<font color="#b00020"><b>{PRELIMINARY}</b></font>')
    rows = [["Sample ID", Paragraph(f"<b>{escape(case['sample_id'])}</b>", s.body)],
            ["Case", f"{case['id']} ({case['n_cells']} cells)"],
            ["Opened", f"{_when(case['created_at'])} by {case['created_by'] or '?'}"],
            *([["Submitted", f"{_when(case['submitted_at'])} by {case['submitted_by'] or '?'} for verification"]]
              if case.get("submitted_at") else []),
            ["Signed", Paragraph(signed, s.body)],
            ["Amendments", str(case["n_amendments"]) + (f" (last change {_when(case['updated_at'])})"
                                                        if case["n_amendments"] else "")],
            ["Report made", _when(facts["made_at"])]]
    return _table(rows, [32 * mm, 140 * mm], header=False)


def _differential(facts: dict[str, Any], s: _Styles) -> list[Any]:
    d = facts["differential"]
    rows: list[list[Any]] = [["Class", "", "Cells", "Share of identified"]]
    for label in d["classes"]:
        mark = " (critical)" if label in d["critical_classes"] else ""
        rows.append([label, Paragraph(escape(class_name(label) + mark), s.small), str(d["counts"][label]),
                     _share(d["shares"][label])])
    n_rows = len(rows)
    rows += [["Identified", "cells counted in a class", str(d["n_identified"]), ""],
             ["Unidentified", "looked at, not classifiable; or in the review bin", str(d["n_unidentified"]), ""],
             ["Out of domain", "outside the model's experience, undecided", str(d["n_out_of_domain"]), ""],
             ["Other cell type", "not a neutrophil, said a reviewer", str(d["n_other_cell_type"]), ""],
             ["All cells", "", str(d["n_cells"]), ""]]
    if d["abnormal_share"] is not None:
        rows.append(["Abnormal", f"identified cells other than {d['normal_class']}", "",
                     _share(d["abnormal_share"])])
    table = _table(rows, [24 * mm, 92 * mm, 18 * mm, 38 * mm], numeric_from=2)
    table.setStyle(TableStyle([("LINEABOVE", (0, n_rows), (-1, n_rows), 0.8, colors.black)]))
    out: list[Any] = [Paragraph("Differential", s.h2), table]
    bins = d["model_bins"]
    out.append(Paragraph(
        f"The model put {bins['n_unidentified']} cell(s) in its review bin and {bins['n_out_of_domain']} outside its "
        "experience; a cell a person decided counts as decided. Shares are fractions of the identified cells.",
        s.small))
    for message in (d["alert"]["message"], bins["domain_warning"]["message"]):
        if message:
            out.append(Paragraph(escape(message), s.alert))
    return out


def _caption(cell: dict[str, Any]) -> str:
    if cell["final_label"] is not None:
        who = f"{escape(cell['decided_by'] or '?')}"
        changed = ("" if cell["final_label"] == cell["predicted_label"]
                   else f" (model: {escape(cell['predicted_label'])})")
        return f"#{cell['position'] + 1} {who}{changed}"
    where = " review bin" if cell["in_review_bin"] else " out of domain" if cell["in_out_of_domain_bin"] else ""
    return f"#{cell['position'] + 1} model {100 * cell['probability']:.0f}%{where}, undecided"


def _thumbnails(cells: list[dict[str, Any]], read_image: Callable[[str], bytes], s: _Styles) -> Table:
    tiles: list[Any] = []
    for cell in cells:
        try:
            jpeg, width, height = thumbnail_jpeg(read_image(cell["image_sha256"]))
            scale = THUMB_PT / max(width, height)
            picture: Any = Image(io.BytesIO(jpeg), width=width * scale, height=height * scale)
        except Exception as exc:  # a missing or unreadable stored image: the report says so and goes on
            picture = Paragraph(f"image unavailable ({escape(str(exc)[:60])})", s.tiny)
        tiles.append([picture, Paragraph(_caption(cell), s.tiny)])
    rows = [tiles[i:i + PER_ROW] for i in range(0, len(tiles), PER_ROW)]
    rows[-1] += [""] * (PER_ROW - len(rows[-1]))
    table = Table(rows, colWidths=[THUMB_PT + 4.5 * mm] * PER_ROW, hAlign="LEFT")
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                               ("LEFTPADDING", (0, 0), (-1, -1), 1), ("RIGHTPADDING", (0, 0), (-1, -1), 1)]))
    return table


def _findings(facts: dict[str, Any], read_image: Callable[[str], bytes], s: _Styles) -> list[Any]:
    out: list[Any] = [Paragraph("Findings", s.h2)]
    if not facts["findings"]:
        out.append(Paragraph("No cell of a class other than the normal one.", s.body))
    for finding in facts["findings"]:
        n_shown = min(len(finding["cells"]), MAX_THUMBNAILS)
        head = (f"{escape(finding['class'])} \u2013 {escape(finding['name'])}"
                f"{' (critical)' if finding['critical'] else ''}: {finding['n_cells']} cell(s)")
        if finding["n_in_bins"]:
            head += f", and {finding['n_in_bins']} undecided in the review or out-of-domain bin"
        note = "" if n_shown == len(finding["cells"]) else (
            f"The first {n_shown} of {len(finding['cells'])} cells are shown; the case at the station holds all.")
        block = [Paragraph(head, s.alert if finding["critical"] else s.h3)]
        if note:
            block.append(Paragraph(note, s.small))
        block.append(_thumbnails(finding["cells"][:MAX_THUMBNAILS], read_image, s))
        out.append(KeepTogether(block))
    if facts["absent_findings"]:
        out.append(Paragraph("No cell of: " + ", ".join(escape(c) for c in facts["absent_findings"]) + ".", s.small))
    return out


def _people(facts: dict[str, Any], s: _Styles) -> list[Any]:
    out: list[Any] = []
    for n, model in enumerate(facts["models"]):
        heading = [Paragraph("Who classified", s.h2)] if n == 0 else []  # kept with the first model's table
        out.append(KeepTogether([*heading, _table([
            ["Model run", model["run"] or "?"],
            ["Architecture, backend", f"{model['arch'] or '?'}, {model['backend']}"],
            ["Weights SHA-256", Paragraph(f'<font face="Courier" size="7.5">{model["weights_sha256"] or "unknown"}'
                                          "</font>", s.body)],
            ["Calibration", f"temperature {model['temperature']:.3g}; review bin under "
                            f"{100 * model['review_threshold']:.0f} % confidence"
                            + (f"; out of domain above {model['ood_threshold']:.4g}" if model["ood_threshold"]
                               is not None else "; no out-of-domain screen")],
            ["Critical classes", ", ".join(model["critical_classes"]) or "none"],
            ["First used", _when(model["first_used_at"])]], [38 * mm, 134 * mm], header=False)]))
        out.append(Spacer(1, 3))
    if not facts["models"]:
        out += [Paragraph("Who classified", s.h2), Paragraph("No cell is classified yet.", s.body)]
    out.append(Paragraph("Who decided", s.h2))
    if facts["deciders"]:
        ways = [w for w in HOW if any(r[w] for r in facts["deciders"])]
        rows = [["Reviewer", "Cells", *[Paragraph(f"<b>{HOW[w]}</b>", s.small) for w in ways]]]
        rows += [[r["name"], str(r["n_cells"]), *[str(r[w]) for w in ways]] for r in facts["deciders"]]
        width = min(26 * mm, (172 * mm - 50 * mm) / max(len(ways), 1))
        out.append(_table(rows, [34 * mm, 16 * mm, *[width] * len(ways)], numeric_from=1))
    else:
        out.append(Paragraph("No cell is decided yet.", s.body))
    case = facts["case"]
    out += _critical_calls(facts, s) + _voided(facts, s)
    out.append(Spacer(1, 4))
    if case.get("submitted_by"):
        out.append(Paragraph(f"Pre-classified and submitted for verification by <b>{escape(case['submitted_by'])}</b> "
                             f"at {_when(case['submitted_at'])}.", s.body))
    out.append(Paragraph(
        f"Signed by <b>{escape(case['signed_by'] or '?')}</b> at {_when(case['signed_at'])}."
        if facts["signed"] else
        f'<font color="#b00020"><b>{PRELIMINARY}</b></font>: no one has signed this case; its results may change.',
        s.body))
    out.append(Paragraph(f"Made by NeuNN {escape(facts['neunn_version'])}.", s.small))
    return out


def _critical_calls(facts: dict[str, Any], s: _Styles) -> list[Any]:
    """To whom, how, when and by whom the critical findings were communicated; a case with one and no record says so."""
    calls, alert = facts["critical_calls"], facts["differential"]["alert"]["critical"]
    if not calls and not alert:
        return []
    out: list[Any] = [Paragraph("Critical findings communicated", s.h2)]
    if not calls:
        out.append(Paragraph("No communication of the critical finding is recorded.", s.alert))
        return out
    rows = [["To", "How", "When", "Recorded by"]]
    rows += [[Paragraph(escape(c["recipient"]) + (f"<br/>{escape(c['note'])}" if c["note"] else ""), s.small),
              c["method"].replace("_", " "), _when(c["communicated_at"]), c["recorded_by"] or "?"] for c in calls]
    out.append(_table(rows, [70 * mm, 24 * mm, 44 * mm, 34 * mm]))
    return out


def _voided(facts: dict[str, Any], s: _Styles) -> list[Any]:
    if not facts["voided_cells"]:
        return []
    rows = [["Cell", "Voided by", "When", "Reason"]]
    rows += [[escape(c["name"])[:40], c["voided_by"] or "?", _when(c["voided_at"]),
              Paragraph(escape(c["void_reason"] or ""), s.small)] for c in facts["voided_cells"]]
    return [Paragraph("Voided cells (not counted)", s.h2), _table(rows, [50 * mm, 30 * mm, 40 * mm, 52 * mm])]


def case_report_pdf(facts: dict[str, Any], read_image: Callable[[str], bytes]) -> bytes:
    """The case's report as PDF bytes, from :func:`neunn.cases.report_facts.report_facts` and the images' reader."""
    s = _Styles()
    case = facts["case"]
    sample = case["sample_id"]
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=19 * mm, rightMargin=19 * mm, topMargin=24 * mm,
                            bottomMargin=22 * mm, title=f"NeuNN case report {sample}",
                            author=f"NeuNN {facts['neunn_version']}", subject="Neutrophil morphology review",
                            creator=f"NeuNN {facts['neunn_version']}")

    def page(canvas, document) -> None:
        width, height = A4
        canvas.saveState()
        if not facts["signed"]:
            canvas.setFillColor(colors.Color(0.69, 0, 0.125, alpha=0.08))
            canvas.setFont("Helvetica-Bold", 54)
            canvas.translate(width / 2, height / 2)
            canvas.rotate(45)
            canvas.drawCentredString(0, 0, "PRELIMINARY")
            canvas.rotate(-45)
            canvas.translate(-width / 2, -height / 2)
            canvas.setFillColor(_RED)
            canvas.rect(19 * mm, height - 17 * mm, width - 38 * mm, 7 * mm, stroke=0, fill=1)
            canvas.setFillColor(colors.white)
            canvas.setFont("Helvetica-Bold", 10)
            canvas.drawCentredString(width / 2, height - 14.8 * mm, PRELIMINARY)
        canvas.setFillColor(_GREY)
        canvas.setFont("Helvetica", 7.5)
        canvas.drawString(19 * mm, height - 20.5 * mm, f"NeuNN case report \u00b7 sample {sample[:80]}")
        canvas.drawRightString(width - 19 * mm, height - 20.5 * mm, f"page {document.page}")
        canvas.drawString(19 * mm, 14 * mm, "Research software, not a diagnostic device. Every classification is a "
                                            "suggestion for a qualified person.")
        canvas.drawString(19 * mm, 10.5 * mm, f"NeuNN {facts['neunn_version']} \u00b7 report made "
                                              f"{_when(facts['made_at'])}")
        canvas.restoreState()

    story: list[Any] = [Paragraph("Neutrophil morphology \u2013 case report", s.title), _facts_table(facts, s)]
    story += _differential(facts, s)
    story += _findings(facts, read_image, s)
    story += _people(facts, s)
    story.append(Paragraph("Disclaimers", s.h2))
    story += [Paragraph(escape(text), s.body) for text in facts["disclaimers"]]
    doc.build(story, onFirstPage=page, onLaterPages=page)
    return out.getvalue()
