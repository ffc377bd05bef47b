// bertviz's head view: one line per head and (query, key), drawn here from numbers only; hovering a token
// shows its lines alone, a swatch hides or shows its head. Markup and data from
// ecco_core.plots.attention_head_view_html.
// Package data of ecco_core.plots, inlined into the page at render time (nothing is fetched). As every view:
// one function of the view's root element, which reads its numbers from the root's JSON block.
function eccoHeadView(root) {
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", data.width); svg.setAttribute("height", data.row * data.n_tokens);
  svg.style.display = "block";
  root.querySelector(".ecco-lines").appendChild(svg);
  root.querySelector(".ecco-label-query").style.width = root.querySelector(".ecco-side-query").offsetWidth + "px";
  const shown = new Set(data.colors.map((_, head) => head));
  const middle = row => data.row * (row + 0.5);
  const byPosition = {query: {}, key: {}};  // position -> [head, line] of the lines at that token
  const groups = data.lines.map(([queries, keys, weights], head) => {
    const group = document.createElementNS(NS, "g");
    group.setAttribute("class", "ecco-head-lines");
    group.dataset.head = head;
    queries.forEach((query, n) => {
      const line = document.createElementNS(NS, "line");
      line.setAttribute("x1", 2); line.setAttribute("x2", data.width - 2);
      line.setAttribute("y1", middle(query)); line.setAttribute("y2", middle(keys[n]));
      line.setAttribute("stroke", data.colors[head]); line.setAttribute("stroke-width", 2);
      line.setAttribute("stroke-opacity", weights[n]);
      line.dataset.query = query; line.dataset.key = keys[n]; line.dataset.weight = weights[n];
      group.appendChild(line);
      (byPosition.query[query] = byPosition.query[query] || []).push([head, line]);
      (byPosition.key[keys[n]] = byPosition.key[keys[n]] || []).push([head, line]);
    });
    svg.appendChild(group);
    return group;
  });
  // A hovered token's lines are copied into this layer and every head's own layer is hidden: a few
  // hundred elements change, not the n_heads * n_tokens**2 of a long text.
  const focusLayer = document.createElementNS(NS, "g");
  svg.appendChild(focusLayer);
  const tokens = root.querySelectorAll(".ecco-token");
  const toggles = root.querySelectorAll(".ecco-head-toggle");
  const tint = (color, alpha) => color.replace("hsl(", "hsla(").replace(")", ", " + alpha.toFixed(3) + ")");
  let focus = null;  // [side, position] of the hovered token
  function draw() {
    focusLayer.replaceChildren();
    const other = {};  // position on the other side -> [weight, head] of its strongest shown line
    if (focus !== null) {
      const copies = {};
      (byPosition[focus[0]][focus[1]] || []).forEach(([head, line]) => {
        if (!shown.has(head)) return;
        if (!copies[head]) {
          copies[head] = document.createElementNS(NS, "g");
          copies[head].setAttribute("class", "ecco-head-lines ecco-focus-lines");
          copies[head].dataset.head = head;
          focusLayer.appendChild(copies[head]);
        }
        copies[head].appendChild(line.cloneNode());
        const end = line.dataset[focus[0] === "query" ? "key" : "query"];
        const weight = Number(line.dataset.weight);
        if (!other[end] || other[end][0] < weight) other[end] = [weight, head];
      });
    }
    groups.forEach((group, head) => { group.style.display = focus === null && shown.has(head) ? "" : "none"; });
    toggles.forEach(toggle => { toggle.style.opacity = shown.has(Number(toggle.dataset.head)) ? 1 : 0.25; });
    tokens.forEach(token => {
      const self = focus !== null && token.dataset.side === focus[0] && token.dataset.position === focus[1];
      const end = focus !== null && token.dataset.side !== focus[0] && other[token.dataset.position];
      token.style.backgroundColor = self ? "rgba(49, 51, 63, 0.12)"
        : end ? tint(data.colors[end[1]], Math.min(1, 0.1 + end[0])) : "";
      token.style.color = end && end[0] > 0.5 ? "#fff" : "";
      token.style.fontWeight = self ? "bold" : "";
    });
    root.dataset.focus = focus === null ? "" : focus.join(" ");
  }
  tokens.forEach(token => {
    token.addEventListener("mouseenter", () => { focus = [token.dataset.side, token.dataset.position]; draw(); });
    token.addEventListener("mouseleave", () => { focus = null; draw(); });
  });
  toggles.forEach(toggle => {
    const head = Number(toggle.dataset.head);
    toggle.addEventListener("click", () => { shown.has(head) ? shown.delete(head) : shown.add(head); draw(); });
    toggle.addEventListener("dblclick", () => {
      const alone = shown.size === 1 && shown.has(head);
      shown.clear();
      (alone ? data.colors.map((_, h) => h) : [head]).forEach(h => shown.add(h));
      draw();
    });
  });
  draw();
}
