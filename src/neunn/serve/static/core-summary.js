// The sample's summary panel and its two banners, for both pages: cells per class with their shares, the review and
// out-of-domain bins, the abnormal share, the critical-finding alert and the unfamiliar-sample warning. The numbers
// are review.js's summarize(); which cells raise the alert is the page's to say (the one-sample page reckons it, the
// case pages take the server's flag on each cell).
import { $, className, percent } from "./core-format.js";
import { criticalMessage } from "./review.js";

/** Show summary ``s`` (review.js summarize) of a sample classified by ``model``: ``critical`` counts the critical
 *  cells by class (they raise the alert), ``criticalRows`` are the classes whose row is marked, ``warning`` is the
 *  sample's out-of-domain warning ({warning, message}), ``decided`` the word for the cells a person has decided. */
export function showSummary(s, model, { critical, criticalRows, warning, decided }) {
  const rows = (model.display_order || model.classes).map((c) => {
    const tr = document.createElement("tr");
    tr.classList.toggle("critical", criticalRows.includes(c));
    tr.title = model.class_names?.[c] ?? c;
    tr.dataset.label = c;
    const th = document.createElement("th");
    th.append(Object.assign(document.createElement("span"), { className: "code", textContent: c }), " ",
              Object.assign(document.createElement("span"), { className: "cname", textContent: className(model, c) }));
    const waiting = (critical[c] ?? 0) - (s.counts[c] ?? 0);  // called critical, still in a bin: in the alert only
    if (waiting > 0) {
      th.append(" ", Object.assign(document.createElement("span"), {
        className: "in-bins", textContent: `+${waiting} in the bins`,
        title: `${waiting} more cell${waiting === 1 ? "" : "s"} called ${c} wait in the review or out-of-domain bin: ` +
               "they raise the alert, and count here once a person decides them" }));
    }
    const bar = Object.assign(document.createElement("span"), { className: "share" });
    bar.style.width = percent(s.shares[c] ?? 0);
    th.append(bar);
    tr.append(th, Object.assign(document.createElement("td"), { className: "num", textContent: s.counts[c] ?? 0 }),
              Object.assign(document.createElement("td"), { className: "num",
                                                           textContent: s.n_identified ? percent(s.shares[c] ?? 0) : "–" }));
    return tr;
  });
  $("#summary tbody").replaceChildren(...rows);
  $("#sum-unidentified").textContent = s.n_unidentified;
  $("#sum-ood").textContent = s.n_out_of_domain;
  const other = $("#sum-other");  // the case pages' decision "not a neutrophil"
  if (other) other.textContent = s.n_other_cell_type ?? 0;
  $("#sum-abnormal").textContent = s.abnormal_share == null || !s.n_identified ? "–" : percent(s.abnormal_share);
  $("#reviewed-count").textContent = s.n_cells ? `· ${s.n_reviewed} of ${s.n_cells} ${decided}` : "";
  const found = Object.keys(critical).length > 0;
  $("#alert").hidden = !found;
  $("#alert-text").textContent = found ? criticalMessage(critical, model).replace(/^Critical finding: /, "") : "";
  $("#domain-warning").hidden = !warning.warning;
  $("#domain-warning-text").textContent = warning.message ?? "";
}
