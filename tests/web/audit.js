// Runs in the page (tests/web/test_accessibility_browser.py); returns the problems found,
// each a short text naming the element. Nothing here decides pass or fail.
const problems = [];
const name = (el) => (el.id ? "#" + el.id : el.tagName.toLowerCase()) +
  (el.textContent ? ` "${el.textContent.trim().slice(0, 30)}"` : "");
const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
if (!document.documentElement.lang) problems.push("no lang on <html>");
for (const el of document.querySelectorAll("input, textarea, select")) {
  if (!el.labels?.length && !el.getAttribute("aria-label")) problems.push("unlabelled " + name(el));
}
for (const el of document.querySelectorAll("button, a[href], summary")) {
  const text = (el.getAttribute("aria-label") || el.textContent || "").trim();
  if (!text) problems.push("nameless " + name(el));
}
for (const el of document.querySelectorAll("img")) {
  if (!el.getAttribute("alt")) problems.push("image without alt " + name(el));
}
for (const el of document.querySelectorAll("[tabindex]")) {
  if (el.tabIndex > 0) problems.push("positive tabindex " + name(el));
}
if (document.querySelectorAll("h1").length !== 1) problems.push("not one h1");
let level = 0;
for (const el of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
  const next = Number(el.tagName[1]);
  if (next > level + 1) problems.push(`heading skips from h${level} to ${name(el)}`);
  level = next;
}
const rgba = (text) => (text.match(/[\d.]+/g) || []).map(Number);
const luminance = ([r, g, b]) => {
  const lin = (c) => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
};
const background = (el) => {
  for (let at = el; at; at = at.parentElement) {
    const color = rgba(getComputedStyle(at).backgroundColor);
    if (color.length === 3 || color[3] > 0) return color;
  }
  return [255, 255, 255];
};
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !shown(el)) continue;
  const style = getComputedStyle(el);
  const fg = rgba(style.color), bg = background(el);
  const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
  const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  if (ratio < need) problems.push(`contrast ${ratio.toFixed(2)} < ${need} on ${name(el)}`);
}
for (const el of document.querySelectorAll("button, a[href], summary, input, textarea")) {
  if (!shown(el)) continue;
  const box = el.getBoundingClientRect();
  if (box.height < 24 || box.width < 24) problems.push(`target ${box.width}x${box.height} ${name(el)}`);
}
return problems;
