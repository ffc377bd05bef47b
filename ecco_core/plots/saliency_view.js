// The saliency view (the Ecco paper's Figure 3): hovering an explained token re-shades the text by its row.
// Markup and data from ecco_core.plots.saliency_view_html; onPin(position), when given, hears a click or Enter.
// Package data of ecco_core.plots, inlined into the page at render time (nothing is fetched). As every view:
// one function of the view's root element, which reads its numbers from the root's JSON block.
function eccoSaliencyView(root, onPin) {
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const spans = Array.from(root.querySelectorAll(".ecco-token"));
  const explained = Array.from(root.querySelectorAll(".ecco-explained"));
  const label = root.querySelector(".ecco-saliency-label");
  const rowOf = new Map(data.positions.map((position, row) => [position, row]));
  let pinned = data.pinned;
  function paint(position) {
    const row = rowOf.get(position), values = data.rows[row];
    let peak = 0;
    for (const value of values) peak = Math.max(peak, Math.abs(value));
    peak = peak || 1;
    for (let column = 0; column < spans.length; column++) {
      const span = spans[column], value = values[column];
      const seen = !data.causal || column < position;
      const strength = seen ? Math.abs(value) / peak : 0;
      const rgb = value < 0 ? data.against : data.evidence;
      span.style.backgroundColor = column === position ? "rgba(255, 75, 75, 0.12)"
        : strength > 0 ? "rgba(" + rgb + ", " + strength.toFixed(3) + ")" : "transparent";
      span.style.color = column === position ? "" : !seen ? "#9aa0a6" : strength > 0.55 ? "#fff" : "";
      span.style.outline = column === position ? "2px solid #ff4b4b"
        : column === pinned ? "1px dashed #ff4b4b" : "";
      span.title = column === position ? "explained token (" + column + ")"
        : seen ? column + ": " + (value * 100).toFixed(1) + "%" : column + ": after the explained token";
    }
    label.textContent = data.labels[row];
    root.dataset.shown = String(position);
  }
  function pin(position) {
    pinned = position;
    root.dataset.pinned = String(position);
    paint(position);
    if (onPin) onPin(position);
  }
  for (const span of explained) {
    const position = Number(span.dataset.position);
    span.addEventListener("mouseenter", () => paint(position));
    span.addEventListener("mouseleave", () => paint(pinned));
    span.addEventListener("focus", () => paint(position));
    span.addEventListener("blur", () => paint(pinned));
    span.addEventListener("click", () => pin(position));
    span.addEventListener("keydown", event => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); pin(position); }
    });
  }
  root.dataset.pinned = String(pinned);
  paint(pinned);
}
