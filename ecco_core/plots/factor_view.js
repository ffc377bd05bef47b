// The factor view (the Ecco paper's Figure 9): hovering a sparkline shows its factor alone on the text,
// a click keeps it (a second click lets it go). Markup and data from ecco_core.plots.factor_view_html;
// onPin(factor), when given, hears the factor a click keeps.
// Package data of ecco_core.plots, inlined into the page at render time (nothing is fetched). As every view:
// one function of the view's root element, which reads its numbers from the root's JSON block.
function eccoFactorView(root, onPin) {
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const tokens = root.querySelectorAll(".ecco-token[data-column]");
  const rows = root.querySelectorAll(".ecco-spark");
  let pinned = null;
  function shade(span, factor, strength) {
    const [r, g, b] = data.colors[factor % data.colors.length];
    span.style.backgroundColor = "rgba(" + r + ", " + g + ", " + b + ", " + strength.toFixed(3) + ")";
    const mixed = [r, g, b].map(c => 255 - strength * (255 - c));
    const light = (0.299 * mixed[0] + 0.587 * mixed[1] + 0.114 * mixed[2]) / 255;
    span.style.color = light < 0.55 ? "#fff" : "";
  }
  function show(factor) {
    tokens.forEach(span => {
      const column = Number(span.dataset.column);
      if (factor === null) shade(span, data.dominant[column], data.levels[data.dominant[column]][column]);
      else shade(span, factor, data.levels[factor][column]);
    });
    rows.forEach((row, index) => { row.style.opacity = factor === null || index === factor ? 1 : 0.25; });
    root.dataset.factor = factor === null ? "" : String(factor);
  }
  rows.forEach((row, index) => {
    row.addEventListener("mouseenter", () => show(index));
    row.addEventListener("mouseleave", () => show(pinned));
    row.addEventListener("click", () => {
      pinned = pinned === index ? null : index;
      show(pinned);
      if (onPin && pinned !== null) onPin(pinned);
    });
  });
  root.querySelectorAll(".ecco-column").forEach(cell => {
    const column = cell.dataset.column;
    const span = root.querySelector(".ecco-token[data-column='" + column + "']");
    cell.addEventListener("mouseenter", () => { span.style.outline = "2px solid #333"; });
    cell.addEventListener("mouseleave", () => { span.style.outline = ""; });
  });
  show(null);
}
