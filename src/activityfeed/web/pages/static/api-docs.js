// Starts Swagger UI on /api/docs (web/apidocs.py). A file, not an inline script: the
// CSP allows scripts from this origin only.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    // No badge: it would send the document to validator.swagger.io.
    validatorUrl: null,
  });
});
