// appealflow's pages work without this file; with it, uploads show their progress.
// No inline script anywhere: the Content-Security-Policy allows only this origin's files.
(function () {
  "use strict";
  function bar(event) {
    var form = event.target && event.target.closest ? event.target.closest("form.upload") : null;
    return form ? form.querySelector("progress.upload-progress") : null;
  }
  document.addEventListener("htmx:xhr:progress", function (event) {
    var p = bar(event);
    if (p && event.detail.lengthComputable) {
      p.hidden = false;
      p.value = Math.round((event.detail.loaded / event.detail.total) * 100);
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var p = bar(event);
    if (p) { p.hidden = false; p.value = 0; }
  });
  // Confirmation for the console's irreversible decisions (approve, reject).
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  }, true);
})();
