// The account's pages with JavaScript: validity and grace countdowns that keep counting, and
// saving a payment card through the payment provider's tokeniser (the card's details go to the
// provider only; this site receives the token).
(function () {
  "use strict";
  var lang = document.documentElement.lang || "en";
  var MINUTE = 60, HOUR = 3600, DAY = 86400;

  function relative(seconds) {
    var format = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
    var size = Math.abs(seconds);
    if (size >= DAY) return format.format(Math.round(seconds / DAY), "day");
    if (size >= HOUR) return format.format(Math.round(seconds / HOUR), "hour");
    return format.format(Math.round(seconds / MINUTE), "minute");
  }

  function tick() {
    document.querySelectorAll("time[data-countdown]").forEach(function (element) {
      var at = Date.parse(element.getAttribute("datetime"));
      if (!isNaN(at)) element.textContent = relative((at - Date.now()) / 1000);
    });
  }
  if (window.Intl && Intl.RelativeTimeFormat && document.querySelector("time[data-countdown]")) {
    window.setInterval(tick, 30000);
  }

  var FIELD_OF_CODE = [
    [/^payment_card_number|^card_number/, "number"],
    [/^expiry|^payment_card_expired/, "expiry"],
    [/^cvc/, "cvc"]
  ];

  function fieldFor(code) {
    for (var i = 0; i < FIELD_OF_CODE.length; i++) {
      if (FIELD_OF_CODE[i][0].test(code)) return FIELD_OF_CODE[i][1];
    }
    return "number";
  }

  function showError(form, name, message) {
    var input = form.querySelector("[data-payment-field='" + name + "']");
    var error = document.getElementById(name + "-error");
    if (!input || !error) return;
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.closest(".field").classList.add("field--error");
    input.focus();
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-payment-field]").forEach(function (input) {
      var error = document.getElementById(input.id + "-error");
      if (error) { error.hidden = true; error.textContent = ""; }
      input.removeAttribute("aria-invalid");
      input.closest(".field").classList.remove("field--error");
    });
  }

  function value(form, name) {
    var input = form.querySelector("[data-payment-field='" + name + "']");
    return input ? input.value.trim() : "";
  }

  document.querySelectorAll("form[data-tokenise]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var tokenField = form.querySelector("input[name=payment_token]");
      if (tokenField.value) return;  // tokenised: on its way to us
      event.preventDefault();
      clearErrors(form);
      var expiry = value(form, "expiry").split("/");
      var body = {
        number: value(form, "number").replace(/[\s-]/g, ""),
        exp_month: parseInt(expiry[0], 10) || 0,
        exp_year: parseInt(expiry[1], 10) || 0,
        cvc: value(form, "cvc")
      };
      fetch(form.dataset.tokeniser, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept-Language": lang },
        body: JSON.stringify(body),
        credentials: "omit"
      }).then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      }).then(function (answer) {
        delete form.dataset.sending;
        if (!answer.ok) {
          var problems = answer.data.errors || [{ code: answer.data.code || "", message: answer.data.detail }];
          problems.forEach(function (problem) {
            showError(form, fieldFor(problem.code || ""), problem.message || answer.data.detail);
          });
          return;
        }
        tokenField.value = answer.data.token;
        form.querySelectorAll("[data-payment-field]").forEach(function (input) { input.value = ""; });
        form.submit();
      }).catch(function () {
        delete form.dataset.sending;
        showError(form, "number", form.dataset.offline || "");
      });
    });
  });
})();
