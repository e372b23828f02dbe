// Language handling shared by the meeting page (i18n.js) and the admin page (admin-i18n.js): each
// passes its own strings. The chosen language is stored under one key, so a browser speaks one
// language on both pages.

const STORAGE_KEY = 'gateway.lang';

export function createI18n(strings) {
  let current = 'en';
  const lookup = (key) => strings[current][key] ?? strings.en[key];

  /** Translates `key`, filling {placeholders}; {count} of 1 takes `key_one` where there is one. */
  function t(key, params = {}) {
    const text = (params.count === 1 && lookup(`${key}_one`)) || lookup(key) || key;
    return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  }

  return {
    t,
    has: (key) => key in strings[current] || key in strings.en,
    getLang: () => current,
    setLang(lang, remember = false) {
      current = strings[lang] ? lang : 'en';
      document.documentElement.lang = current;
      if (remember) {
        try { localStorage.setItem(STORAGE_KEY, current); } catch { /* ignore */ }
      }
    },
    /** The language to start with: a stored choice, else the browser's language (de* -> German). */
    detectLang() {
      let stored = null;
      try { stored = localStorage.getItem(STORAGE_KEY); } catch { /* storage may be disabled */ }
      if (stored && strings[stored]) return stored;
      const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
      return String(langs[0] || 'en').toLowerCase().startsWith('de') ? 'de' : 'en';
    },
    /** Fills static markup: data-i18n (text), data-i18n-label (aria-label), data-i18n-title. */
    applyStatic(root = document) {
      for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
      for (const node of root.querySelectorAll('[data-i18n-label]')) node.setAttribute('aria-label', t(node.dataset.i18nLabel));
      for (const node of root.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
    },
  };
}
