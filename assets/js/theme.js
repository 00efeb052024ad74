// Applies the saved colour theme before first paint (loaded blocking in <head>).
(function () {
  try {
    var t = localStorage.getItem("crm-theme");
    if (t === "dark" || t === "light") document.documentElement.dataset.theme = t;
  } catch (e) { /* storage may be disabled */ }
})();
