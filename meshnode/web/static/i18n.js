// The page's words: one catalogue per language in i18n/ (English first), chosen by the
// browser's languages. t(key, values) fills {name} placeholders; elements marked
// data-i18n (text), data-i18n-label (aria-label) or data-i18n-alt (alt) get theirs at start.

export const LANGUAGES = ["en", "fr", "es"]; // catalogues shipped in i18n/, in any order
let words = {};

/** Load the catalogue of the first of the browser's languages that ships here, else English. */
export async function loadWords(preferred = navigator.languages ?? [navigator.language]) {
  const wanted = preferred.map((tag) => String(tag).toLowerCase().split("-")[0]);
  const language = wanted.find((tag) => LANGUAGES.includes(tag)) ?? "en";
  const response = await fetch(`/static/i18n/${language}.json`);
  words = await response.json();
  document.documentElement.lang = language;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  for (const element of document.querySelectorAll("[data-i18n-alt]")) {
    element.setAttribute("alt", t(element.dataset.i18nAlt));
  }
  return language;
}

/** The words for ``key`` with {placeholders} filled from ``values``; the key if missing. */
export function t(key, values = {}) {
  const text = words[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** The plural form of ``key`` for ``count`` (key.one, key.other, ...), with {count} filled. */
export function tn(key, count, values = {}) {
  const form = new Intl.PluralRules(document.documentElement.lang || "en").select(count);
  const chosen = `${key}.${form}` in words ? `${key}.${form}` : `${key}.other`;
  return t(chosen, { ...values, count });
}
