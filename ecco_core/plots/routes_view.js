// The information-flow routes graph of ecco_core.plots.circuits.routes_html: built here from its JSON block.
// Layers upward, tokens across; the slider prunes the graph again from the prediction back to the inputs;
// hover an edge or a node for its numbers; click a node to highlight the routes through it.
// Package data of ecco_core.plots, inlined into the page at render time (nothing is fetched). As every view:
// one function of the view's root element, which reads its numbers from the root's JSON block.
function eccoRoutesView(root) {
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const nTokens = data.tokens.length, nRows = data.rows.length;
  const canvas = root.querySelector(".ecco-routes-canvas");
  const left = 92, top = 12, bottom = 78, rowHeight = 13;
  // As wide as the view allows (a long prompt scrolls sideways), at most 90 pixels a token.
  const col = Math.max(24, Math.min(90, ((canvas.clientWidth || 960) - left - 24) / nTokens));
  const width = left + col * nTokens + 24, height = top + rowHeight * (nRows - 1) + bottom;
  const x = position => left + col * (position + 0.5);
  const y = row => top + rowHeight * (nRows - 1 - row);
  const node = (row, position) => row + ":" + position;
  const rootNode = node(data.root[0], data.root[1]);
  const quoted = position => "'" + data.tokens[position] + "'";
  const where = (row, position) => data.rows[row] + " at " + position + " " + quoted(position);

  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  svg.style.display = "block";
  canvas.appendChild(svg);
  const element = (name, attributes, parent) => {
    const made = document.createElementNS(NS, name);
    Object.entries(attributes).forEach(([key, value]) => made.setAttribute(key, value));
    (parent || svg).appendChild(made);
    return made;
  };
  const text = (content, attributes) => { const made = element("text", attributes); made.textContent = content; return made; };

  // The frame: a faint column per token, a label per block output (every other one when crowded).
  const background = element("rect", {x: 0, y: 0, width: width, height: height, fill: "white"});
  for (let position = 0; position < nTokens; position++) {
    element("line", {x1: x(position), x2: x(position), y1: y(nRows - 1), y2: y(0), stroke: "#f0f0f0"});
    const label = text(data.tokens[position], {
      x: x(position), y: y(0) + 16, "font-size": 13, "text-anchor": col < 70 ? "end" : "middle",
      class: "ecco-routes-token", fill: position === data.root[1] ? "#ff4b4b" : "#31333f",
    });
    if (col < 70) label.setAttribute("transform", "rotate(-40 " + x(position) + " " + (y(0) + 16) + ")");
  }
  const every = nRows > 40 ? 4 : 2;  // the embeddings, then every other block's output when crowded
  for (let row = 0; row < nRows; row += every) {
    text(data.rows[row], {x: left - 10, y: y(row) + 4, "font-size": 11, "text-anchor": "end", fill: "#888"});
  }

  // Edges, the widest first (below), so thin ones stay hoverable.
  const edges = data.edges.map(([kind, head, sourceRow, sourcePosition, targetRow, targetPosition, importance], n) => {
    const x1 = x(sourcePosition), y1 = y(sourceRow), x2 = x(targetPosition), y2 = y(targetRow);
    const color = kind === 0 ? data.colors[head] : kind === 2 ? data.ffn : "#9a9a9a";
    let d = "M" + x1 + "," + y1 + " L" + x2 + "," + y2;
    if (kind === 2) d = "M" + x1 + "," + y1 + " Q" + (x1 + col * 0.45) + "," + (y1 + y2) / 2 + " " + x2 + "," + y2;
    if (kind === 0 && sourcePosition === targetPosition) {  // a head reading its own token: beside the stream
      d = "M" + x1 + "," + y1 + " Q" + (x1 - col * 0.4) + "," + (y1 + y2) / 2 + " " + x2 + "," + y2;
    }
    const path = element("path", {d: d, fill: "none", stroke: color, "stroke-width": 0.8 + 7 * importance,
                                  "stroke-linecap": "round", class: "ecco-route-edge"});
    path.style.pointerEvents = "visibleStroke";
    path.dataset.index = n;
    return {kind, head, source: node(sourceRow, sourcePosition), target: node(targetRow, targetPosition),
            sourceRow, sourcePosition, targetRow, targetPosition, importance, path, label: data.labels[n]};
  });
  edges.slice().sort((a, b) => b.importance - a.importance).forEach(edge => svg.appendChild(edge.path));

  const nodes = {};
  const nodeLayer = element("g", {});
  const nodeAt = (row, position) => {
    const key = node(row, position);
    if (!nodes[key]) {
      const circle = element("circle", {cx: x(position), cy: y(row), r: key === rootNode ? 6 : 2.5,
                                        fill: key === rootNode ? "#ff4b4b" : "#31333f", class: "ecco-route-node"}, nodeLayer);
      circle.dataset.row = row; circle.dataset.position = position;
      circle.style.cursor = "pointer";
      nodes[key] = {row, position, circle};
    }
    return nodes[key];
  };
  edges.forEach(edge => { nodeAt(edge.sourceRow, edge.sourcePosition); nodeAt(edge.targetRow, edge.targetPosition); });
  nodeAt(data.root[0], data.root[1]);

  const slider = root.querySelector(".ecco-routes-threshold");
  const tip = root.querySelector(".ecco-routes-tip");
  let kept = new Set(), selected = null;

  function prune(threshold) {  // from the prediction back to the inputs, as Circuits.routes_frame does
    const into = {};
    edges.forEach(edge => { if (edge.importance >= threshold) (into[edge.target] = into[edge.target] || []).push(edge); });
    const shown = new Set(), seen = new Set([rootNode]), frontier = [rootNode];
    while (frontier.length) {
      (into[frontier.pop()] || []).forEach(edge => {
        shown.add(edge);
        if (!seen.has(edge.source)) { seen.add(edge.source); frontier.push(edge.source); }
      });
    }
    return [shown, seen];
  }

  function routesThrough(start) {  // every kept edge on a route through the node: toward the inputs, and on up
    const marked = new Set();
    [["target", "source"], ["source", "target"]].forEach(([from, to]) => {
      const seen = new Set([start]), frontier = [start];
      while (frontier.length) {
        const at = frontier.pop();
        kept.forEach(edge => {
          if (edge[from] !== at) return;
          marked.add(edge);
          if (!seen.has(edge[to])) { seen.add(edge[to]); frontier.push(edge[to]); }
        });
      }
    });
    return marked;
  }

  function draw() {
    const threshold = Number(slider.value);
    let reached;
    [kept, reached] = prune(threshold);
    if (selected !== null && !reached.has(selected)) selected = null;
    const marked = selected === null ? null : routesThrough(selected);
    edges.forEach(edge => {
      const visible = kept.has(edge);
      edge.path.style.display = visible ? "" : "none";
      edge.path.style.opacity = !visible ? 0 : marked === null ? 0.75 : marked.has(edge) ? 0.95 : 0.08;
      edge.path.classList.toggle("ecco-route-marked", visible && marked !== null && marked.has(edge));
    });
    const onRoutes = new Set([selected]);
    if (marked !== null) marked.forEach(edge => { onRoutes.add(edge.source); onRoutes.add(edge.target); });
    Object.entries(nodes).forEach(([key, item]) => {
      item.circle.style.display = reached.has(key) ? "" : "none";
      item.circle.style.opacity = marked === null || onRoutes.has(key) ? 1 : 0.2;
      item.circle.setAttribute("stroke", key === selected ? "#ff4b4b" : "none");
      item.circle.setAttribute("stroke-width", 3);
    });
    root.querySelector(".ecco-routes-value").textContent = threshold.toFixed(2);
    root.querySelector(".ecco-routes-count").textContent = kept.size + " edges, " + reached.size + " nodes";
    root.dataset.edges = kept.size;
    root.dataset.nodes = reached.size;
    root.dataset.marked = marked === null ? "" : marked.size;
    root.dataset.selected = selected === null ? "" : selected;
  }

  function show(event, lines) {
    tip.textContent = lines.join("\n");
    tip.style.display = "block";
    tip.style.left = (event.clientX + 14) + "px";
    tip.style.top = (event.clientY + 14) + "px";
  }
  const hide = () => { tip.style.display = "none"; };
  edges.forEach(edge => {
    edge.path.addEventListener("mousemove", event => show(event, [
      edge.label,
      "from " + where(edge.sourceRow, edge.sourcePosition),
      "into " + where(edge.targetRow, edge.targetPosition),
      "importance " + edge.importance.toFixed(3),
    ]));
    edge.path.addEventListener("mouseleave", hide);
  });
  Object.entries(nodes).forEach(([key, item]) => {
    item.circle.addEventListener("mousemove", event => {
      const inward = [...kept].filter(edge => edge.target === key), outward = [...kept].filter(edge => edge.source === key);
      const total = inward.reduce((sum, edge) => sum + edge.importance, 0);
      show(event, [
        where(item.row, item.position) + (key === rootNode ? " (the prediction)" : ""),
        inward.length + " edges in (importance " + total.toFixed(3) + "), " + outward.length + " out",
        "click to highlight its routes",
      ]);
    });
    item.circle.addEventListener("mouseleave", hide);
    item.circle.addEventListener("click", event => {
      event.stopPropagation();
      selected = selected === key ? null : key;
      draw();
    });
  });
  background.addEventListener("click", () => { selected = null; draw(); });
  slider.addEventListener("input", draw);
  draw();
}
