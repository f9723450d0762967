// Starts Swagger UI on the JSON API's page, /api/v1/docs (web/api.py), from this file
// rather than an inline script, so that page's Content-Security-Policy allows none. The
// settings are FastAPI's defaults for its own Swagger UI page, with no online validator.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
