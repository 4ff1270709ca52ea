// Every page registers the app's service worker (scope: the whole site), so that the site installs
// as an app and shows its offline page without a network. Without it the site works as before.
(function () {
  "use strict";
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/service-worker.js", { scope: "/" }).catch(function () {
    // Not allowed here (a private window, an insecure origin): the site works without it.
  });
})();
