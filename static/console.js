// Small behaviours of the console; every page works without them.
"use strict";
// The language switcher submits as soon as a language is chosen.
document.querySelectorAll("select[data-submit-on-change]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
// A link to a tab (#tab-mail) opens it, and the tabs it is nested in, on page load; the anchors are the
// same in every language. Choosing a tab puts its anchor in the address, so the link can be shared.
const openTab = (hash) => {
  const pane = hash && document.getElementById(hash.slice(1));
  if (!pane || !pane.classList.contains("tab-pane") || !window.bootstrap) return;
  const chain = [];
  for (let node = pane; node; node = node.parentElement && node.parentElement.closest(".tab-pane")) chain.unshift(node);
  chain.forEach((node) => {
    const link = document.querySelector(`[data-bs-toggle="tab"][href="#${node.id}"]`);
    if (link) window.bootstrap.Tab.getOrCreateInstance(link).show();
  });
};
openTab(window.location.hash);
window.addEventListener("hashchange", () => openTab(window.location.hash));
document.querySelectorAll('[data-bs-toggle="tab"]').forEach((link) => {
  link.addEventListener("click", () => history.replaceState(null, "", link.getAttribute("href")));
});
