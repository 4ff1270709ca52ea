// The reminders page with JavaScript: turning on the app's notifications on this device. The
// browser subscribes to Web Push with the site's VAPID public key (data-key), and the
// subscription (its endpoint and keys) is posted to the site with the page's CSRF token.
// Without JavaScript, or a browser without push, the button stays hidden.
(function () {
  "use strict";
  var box = document.querySelector("[data-push]");
  if (!box) return;
  var status = box.querySelector("[data-push-status]");
  var button = box.querySelector("[data-push-on]");

  function say(message) {
    status.textContent = message;
    status.hidden = false;
  }

  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  box.hidden = false;
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    button.hidden = true;
    say(box.getAttribute("data-unsupported"));
    return;
  }
  button.addEventListener("click", function () {
    button.disabled = true;
    Notification.requestPermission().then(function (answer) {
      if (answer !== "granted") throw new Error("refused");
      return navigator.serviceWorker.register("/service-worker.js", { scope: "/" })
        .then(function () { return navigator.serviceWorker.ready; });
    }).then(function (registration) {
      return registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(box.getAttribute("data-key"))
      });
    }).then(function (subscription) {
      return fetch(box.getAttribute("data-save"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": box.getAttribute("data-csrf") },
        body: JSON.stringify(subscription.toJSON())
      });
    }).then(function (answer) {
      if (!answer.ok) throw new Error("not saved");
      say(box.getAttribute("data-done"));
      button.hidden = true;
    }).catch(function () {
      say(box.getAttribute("data-refused"));
    }).then(function () { button.disabled = false; });
  });
})();
