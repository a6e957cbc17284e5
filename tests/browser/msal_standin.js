// A stand-in for MSAL.js (served in place of https://alcdn.msauth.net/...) for the browser tests:
// window.msal.createNestablePublicClientApplication returns an app whose acquireTokenSilent
// resolves with window.__MSAL_STANDIN__.token (set per test), or fails so acquireTokenPopup is
// tried (window.__MSAL_STANDIN__.silentFails). Calls are recorded in window.__MSAL_STANDIN_LOG__.
(function () {
  "use strict";
  var log = (window.__MSAL_STANDIN_LOG__ = window.__MSAL_STANDIN_LOG__ || []);
  function settings() {
    return window.__MSAL_STANDIN__ || {};
  }
  window.msal = {
    createNestablePublicClientApplication: function (config) {
      log.push({ call: "createNestablePublicClientApplication", clientId: config.auth.clientId,
                 authority: config.auth.authority });
      return Promise.resolve({
        acquireTokenSilent: function (request) {
          log.push({ call: "acquireTokenSilent", scopes: request.scopes });
          if (settings().silentFails || !settings().token) {
            return Promise.reject(new Error("interaction_required"));
          }
          return Promise.resolve({ accessToken: settings().token, scopes: request.scopes });
        },
        acquireTokenPopup: function (request) {
          log.push({ call: "acquireTokenPopup", scopes: request.scopes });
          if (!settings().token) {
            return Promise.reject(new Error("user_cancelled"));
          }
          return Promise.resolve({ accessToken: settings().token, scopes: request.scopes });
        },
      });
    },
  };
})();
