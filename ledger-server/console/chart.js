// Charts as SVG, drawn from numbers the API gave: lines (one per series) or
// stacked bars over months. Each comes with its numbers as a table for screen
// readers and for checking.

import { el } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
// Colours distinguishable with the common colour-vision deficiencies (Okabe–Ito).
export const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];

function s(tag, attrs = {}, ...kids) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

/**
 * months: ['2019-01', …]; series: [{name, values: [n per month]}].
 * kind: 'line' or 'stacked'.
 */
export function chart({ title, months, series, kind = 'line' }) {
  const W = 760;
  const H = 260;
  const L = 44;
  const B = 34;
  const T = 10;
  const R = 10;
  const n = months.length;
  const totals = months.map((_, i) => series.reduce((a, x) => a + (x.values[i] || 0), 0));
  const max = Math.max(1, ...(kind === 'stacked' ? totals : series.flatMap((x) => x.values)));
  const x = (i) => L + ((W - L - R) * (n <= 1 ? 0.5 : i / (n - 1)));
  const bw = Math.max(1, (W - L - R) / Math.max(n, 1) - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  // Axes and a few gridlines.
  for (const f of [0, 0.5, 1]) {
    const v = Math.round(max * f);
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#ddd' }));
    svg.append(s('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end' }, v));
  }
  const every = Math.max(1, Math.ceil(n / 12));
  months.forEach((m, i) => {
    if (i % every === 0) svg.append(s('text', { x: kind === 'stacked' ? L + i * (bw + 1) + bw / 2 : x(i), y: H - B + 16, 'text-anchor': 'middle' }, m));
  });
  if (kind === 'stacked') {
    const base = months.map(() => 0);
    series.forEach((ser, k) => {
      ser.values.forEach((v, i) => {
        if (!v) return;
        const top = base[i] + v;
        svg.append(s('rect', { x: L + i * (bw + 1), y: y(top), width: bw, height: y(base[i]) - y(top), fill: COLOURS[k % COLOURS.length] },
          s('title', {}, `${ser.name} ${months[i]}: ${v}`)));
        base[i] = top;
      });
    });
  } else {
    series.forEach((ser, k) => {
      const pts = ser.values.map((v, i) => `${x(i).toFixed(1)},${y(v || 0).toFixed(1)}`).join(' ');
      svg.append(s('polyline', { points: pts, fill: 'none', stroke: COLOURS[k % COLOURS.length], 'stroke-width': 2 },
        s('title', {}, ser.name)));
    });
  }
  const legend = el('ul', { class: 'legend' },
    series.map((ser, k) => el('li', {}, el('span', { 'aria-hidden': 'true', style: null, class: `swatch-${k}` }), ser.name)));
  // Swatch colours without inline styles (the CSP forbids them): SVG squares.
  legend.querySelectorAll('li').forEach((li, k) => {
    const sw = s('svg', { width: 12, height: 12, 'aria-hidden': 'true' }, s('rect', { width: 12, height: 12, fill: COLOURS[k % COLOURS.length] }));
    li.firstChild.replaceWith(sw);
  });
  const table = el('details', {},
    el('summary', {}, title),
    el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': title }, el('table', {},
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, ''), series.map((ser) => el('th', { scope: 'col' }, ser.name)))),
      el('tbody', {}, months.map((m, i) => el('tr', {}, el('th', { scope: 'row' }, m), series.map((ser) => el('td', {}, ser.values[i] || 0))))))));
  return el('figure', {}, svg, legend, table);
}
