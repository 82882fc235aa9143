// Boxes drawn over an image: an SVG in the record's pixel space laid over the <img>, so a box
// lands where the record says whatever size the image is shown at. Matched boxes are drawn
// thicker and brighter; every box carries its label; a box the export outlined with polygons
// shows its outlines over its dashed rectangle.

const SVG = 'http://www.w3.org/2000/svg';

// Eight colours that stay distinguishable and visible on photos (the thumbnail palette); each is
// at least 4.5:1 against the black outline its label text is drawn with (WCAG AA).
const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#0082c8', '#f58230', '#b366ff', '#46f0f0', '#f032e6'];

/** The colour of a label: the same label has the same colour everywhere. */
export function labelColour(label) {
  let h = 0;
  for (const ch of new TextEncoder().encode(label)) h = (Math.imul(h, 31) + ch) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/**
 * An SVG overlay for a record of `width` x `height` with `boxes` ({label,x,y,w,h,polygons?});
 * the indexes in `matched` are highlighted.
 */
export function overlay(width, height, boxes, matched = new Set()) {
  const svg = el('svg', {
    class: 'boxes',
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: 'none',
    'aria-hidden': 'true',
  });
  const font = Math.max(width, height) / 22;
  boxes.forEach((b, i) => {
    const hit = matched.has(i);
    const colour = labelColour(b.label);
    const g = el('g', { class: hit ? 'box matched' : 'box', 'data-label': b.label, 'data-index': i });
    const outlines = Array.isArray(b.polygons) ? b.polygons : [];
    // A box with outlines shows them, over a faint dashed rectangle (the box crops and
    // redaction use); a box without shows its rectangle.
    g.append(
      el('rect', {
        x: b.x,
        y: b.y,
        width: b.w,
        height: b.h,
        fill: hit && !outlines.length ? colour : 'none',
        'fill-opacity': hit && !outlines.length ? 0.18 : 0,
        stroke: colour,
        'stroke-width': outlines.length ? 1 : hit ? 4 : 2,
        'stroke-dasharray': outlines.length ? '4 4' : 'none',
        'stroke-opacity': outlines.length ? 0.6 : 1,
        'vector-effect': 'non-scaling-stroke',
      }),
    );
    for (const ring of outlines) {
      g.append(
        el('polygon', {
          points: ring.map(([x, y]) => `${x},${y}`).join(' '),
          fill: hit ? colour : 'none',
          'fill-opacity': hit ? 0.18 : 0,
          stroke: colour,
          'stroke-width': hit ? 4 : 2,
          'vector-effect': 'non-scaling-stroke',
        }),
      );
    }
    const tag = el('text', {
      x: b.x + font * 0.15,
      y: Math.max(b.y, font) - font * 0.2,
      'font-size': font,
      fill: colour,
      stroke: '#000',
      'stroke-width': font / 10,
      'paint-order': 'stroke',
      'font-weight': hit ? 700 : 400,
    });
    tag.textContent = hit ? `${b.label} ✓` : b.label;
    g.append(tag);
    const title = el('title', {});
    title.textContent = `${b.label}${hit ? ' (matched)' : ''}`;
    g.append(title);
    svg.append(g);
  });
  return svg;
}
