// Small behaviours of the console; every page works without them.
"use strict";
// The language switcher submits as soon as a language is chosen.
document.querySelectorAll("select[data-submit-on-change]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
