// Line icons as inline SVG (drawn here, no icon font or emoji font needed).

const NS = "http://www.w3.org/2000/svg";

const PATHS = {
  plus: ["M12 5v14M5 12h14"],
  trash: ["M4 7h16M10 11v6M14 11v6M6 7l1 12a2 2 0 0 0 2 2h6a2 2 0 0 0 2-2l1-12M9 7V4h6v3"],
  edit: ["M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4"],
  copy: ["M9 9h11v11H9z", "M5 15H4V4h11v1"],
  refresh: ["M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5"],
  up: ["M7 11v9H4v-9h3zM7 11l4-7a2 2 0 0 1 3 2l-1 4h5a2 2 0 0 1 2 2.3l-1.2 6A2 2 0 0 1 16.8 20H7"],
  sliders: ["M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1", "M15 4v4M9 10v4M17 16v4"],
  menu: ["M4 6h16M4 12h16M4 18h16"],
  close: ["M6 6l12 12M18 6L6 18"],
  download: ["M12 4v11M7 10l5 5 5-5M5 20h14"],
  upload: ["M12 20V9M7 14l5-5 5 5M5 4h14"],
  // fork from here: a trunk with a branch leaving it
  fork: ["M8 5a2 2 0 1 1-4 0a2 2 0 1 1 4 0zM8 19a2 2 0 1 1-4 0a2 2 0 1 1 4 0zM20 5a2 2 0 1 1-4 0a2 2 0 1 1 4 0z",
    "M6 7v10M18 7v1a4 4 0 0 1-4 4h-4a4 4 0 0 0-4 4"],
};

export function icon(name) {
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  const flip = name === "down";
  for (const d of PATHS[flip ? "up" : name] || []) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    if (flip) path.setAttribute("transform", "matrix(1 0 0 -1 0 24)");
    svg.append(path);
  }
  return svg;
}

// Static buttons say which icon they carry: <button data-icon="plus">.
export function applyIcons(root = document) {
  for (const el of root.querySelectorAll("[data-icon]")) {
    if (!el.querySelector("svg")) el.prepend(icon(el.dataset.icon));
  }
}
