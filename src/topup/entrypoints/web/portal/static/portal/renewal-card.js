// The payment card form: the fields are checked as they are typed with the rules and codes of
// topup/domain/payment_card.py (the server stays the authority), the details go to the PSP's
// tokeniser, and only its token is sent to topup. The card number never reaches topup.
(function () {
  "use strict";

  var DIGITS_MIN = 12;
  var DIGITS_MAX = 19;
  var EXPIRY_YEARS_AHEAD_MAX = 20;
  var DASHES = /[-\u2010\u2011\u2012\u2013\u2014\u2015\u2212]/g;
  var LENGTHS = {
    visa: [13, 16, 19],
    mastercard: [16],
    amex: [15],
    unionpay: [16, 17, 18, 19],
    jcb: [16, 17, 18, 19],
    discover: [16, 17, 18, 19],
    unknown: [12, 13, 14, 15, 16, 17, 18, 19]
  };
  var BRAND_NAMES = {
    visa: "Visa", mastercard: "Mastercard", amex: "American Express",
    unionpay: "UnionPay", jcb: "JCB", discover: "Discover"
  };

  function isDigits(text) { return /^[0-9]+$/.test(text); }

  function normalizeNumber(text) {
    if (isDigits(text)) return text;
    return text.normalize("NFKC").replace(/\s/g, "").replace(DASHES, "");
  }

  function brandFromDigits(digits) {
    if (!isDigits(digits)) return "unknown";
    if (digits.charAt(0) === "4") return "visa";
    var two = digits.slice(0, 2), three = digits.slice(0, 3), four = digits.slice(0, 4);
    if (two === "34" || two === "37") return "amex";
    if (["51", "52", "53", "54", "55"].indexOf(two) >= 0) return "mastercard";
    if (four.length === 4 && +four >= 2221 && +four <= 2720) return "mastercard";
    if (four.length === 4 && +four >= 3528 && +four <= 3589) return "jcb";
    if (two === "62") return "unionpay";
    if (four === "6011" || two === "65") return "discover";
    if (three.length === 3 && +three >= 644 && +three <= 649) return "discover";
    return "unknown";
  }

  function luhnIsValid(digits) {
    var total = 0, double = false;
    for (var index = digits.length - 1; index >= 0; index -= 1) {
      var value = +digits.charAt(index);
      if (double) { value *= 2; if (value > 9) value -= 9; }
      total += value;
      double = !double;
    }
    return total % 10 === 0;
  }

  function problem(code, params) { return { code: code, params: params || {} }; }

  function numberProblem(digits, brand) {
    if (!digits) return problem("payment_card_number_empty");
    for (var index = 0; index < digits.length; index += 1) {
      if (!isDigits(digits.charAt(index))) {
        return problem("payment_card_number_invalid_characters", { character: digits.charAt(index) });
      }
    }
    if (LENGTHS[brand].indexOf(digits.length) < 0) {
      return problem("payment_card_number_wrong_length", { length: String(digits.length) });
    }
    if (!luhnIsValid(digits)) return problem("payment_card_number_bad_check_digit");
    return null;
  }

  // "MM/YY" (or MM/YYYY, MMYY, MM-YY, MM YY) -> [month, year]; a part that is not a number is -1.
  function parseExpiry(text) {
    var typed = text.normalize("NFKC").replace(/\s/g, "");
    var parts = typed.split(/[\/.\-]/);
    if (parts.length === 1 && isDigits(typed) && (typed.length === 4 || typed.length === 6)) {
      parts = [typed.slice(0, 2), typed.slice(2)];
    }
    if (parts.length !== 2) return [-1, -1];
    var month = isDigits(parts[0]) && parts[0].length <= 2 ? +parts[0] : -1;
    var year = isDigits(parts[1]) && (parts[1].length === 2 || parts[1].length === 4) ? +parts[1] : -1;
    return [month, year];
  }

  function pad(value) { return (value < 10 ? "0" : "") + value; }

  function expiryProblem(month, year, today) {
    if (!(month >= 1 && month <= 12)) return problem("expiry_month_invalid");
    var fullYear = year >= 0 && year < 100 ? 2000 + year : year;
    if (!(fullYear >= 2000 && fullYear <= today.year + EXPIRY_YEARS_AHEAD_MAX)) {
      return problem("expiry_year_invalid", {
        example_short: pad(today.year % 100), example_long: String(today.year)
      });
    }
    if (fullYear < today.year || (fullYear === today.year && month < today.month)) {
      return problem("payment_card_expired", { expiry: pad(month) + "/" + pad(fullYear % 100) });
    }
    return null;
  }

  function cvcProblem(cvc, brand) {
    var typed = cvc.normalize("NFKC").trim();
    if (typed && !isDigits(typed)) return problem("cvc_invalid_characters");
    var wanted = brand === "amex" ? 4 : 3;
    if (typed.length !== wanted) return problem("cvc_wrong_length", { digits: String(wanted) });
    return null;
  }

  // Every field's first problem (null when fine), as check_card_details reports them.
  function check(number, expiry, cvc, today) {
    var digits = normalizeNumber(number);
    var brand = brandFromDigits(digits);
    var parsed = parseExpiry(expiry);
    return {
      card_number: numberProblem(digits, brand),
      expiry: expiryProblem(parsed[0], parsed[1], today),
      cvc: cvcProblem(cvc, brand),
      brand: brand,
      digits: digits,
      month: parsed[0],
      year: parsed[1]
    };
  }

  window.topupPaymentCard = {
    check: check, brandFromDigits: brandFromDigits, normalizeNumber: normalizeNumber,
    parseExpiry: parseExpiry
  };

  var form = document.querySelector("form[data-card-form]");
  if (!form) return;
  var textsNode = document.getElementById("card-texts");
  var texts = textsNode ? JSON.parse(textsNode.textContent) : {};
  var todayParts = (form.getAttribute("data-today") || "").split("-");
  var today = { year: +todayParts[0], month: +todayParts[1] };
  var fields = {
    card_number: document.getElementById("card_number"),
    expiry: document.getElementById("expiry"),
    cvc: document.getElementById("cvc")
  };
  var brandNode = form.querySelector("[data-card-brand]");
  var problemNode = form.querySelector("[data-pay-problem]");
  var button = form.querySelector("[data-pay-button]");
  var tokenField = form.querySelector("[data-payment-token]");
  var shown = {};
  var sending = false;

  form.querySelector("[data-card-fields]").hidden = false;

  function textOf(found) {
    var template = texts[found.code] || found.code;
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(found.params, name) ? found.params[name] : whole;
    });
  }

  function show(name, message) {
    var input = fields[name];
    var box = form.querySelector("[data-field='" + name + "']");
    var error = document.getElementById(name + "-error");
    error.textContent = message || "";
    error.hidden = !message;
    box.classList.toggle("field--error", !!message);
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    shown[name] = !!message;
  }

  function current() {
    return check(fields.card_number.value, fields.expiry.value, fields.cvc.value, today);
  }

  function showBrand(result) {
    var name = BRAND_NAMES[result.brand] || "";
    brandNode.textContent = name;
  }

  function recheck(name, always) {
    var result = current();
    showBrand(result);
    var found = result[name];
    if (always || shown[name] || (name === "card_number" && !found)) {
      show(name, found ? textOf(found) : "");
    }
    return result;
  }

  // As the number is typed: a character that is not a digit is said at once, and so is what
  // is wrong with a number as long as a whole one of its brand; a field already marked wrong is
  // judged again at each change. The rest waits for the field to be left, or for Pay.
  function judgeAtOnce(result) {
    var found = result.card_number;
    if (found && found.code === "payment_card_number_invalid_characters") return true;
    var length = result.digits.length;
    var lengths = LENGTHS[result.brand];
    var whole = lengths.indexOf(length) >= 0 && length >= (result.brand === "amex" ? 15 : 16);
    return whole || length > lengths[lengths.length - 1];
  }

  ["card_number", "expiry", "cvc"].forEach(function (name) {
    fields[name].addEventListener("input", function () {
      var result = current();
      recheck(name, name === "card_number" && judgeAtOnce(result));
      if (name === "card_number" && shown.cvc) recheck("cvc", true);
    });
    fields[name].addEventListener("change", function () {
      if (fields[name].value) recheck(name, true);
    });
  });

  function summarise(problems) {
    var old = form.parentNode.querySelector("[data-client-summary]");
    if (old) old.remove();
    if (!problems.length) return;
    var summary = document.createElement("div");
    summary.className = "error-summary";
    summary.setAttribute("role", "alert");
    summary.setAttribute("tabindex", "-1");
    summary.setAttribute("data-client-summary", "");
    var title = document.createElement("h2");
    title.className = "error-summary__title";
    title.textContent = form.getAttribute("data-text-summary");
    var list = document.createElement("ul");
    list.className = "error-summary__list";
    problems.forEach(function (item) {
      var entry = document.createElement("li");
      var link = document.createElement("a");
      link.href = "#" + item.name;
      link.textContent = item.message;
      link.addEventListener("click", function (event) {
        event.preventDefault();
        fields[item.name].focus();
      });
      entry.appendChild(link);
      list.appendChild(entry);
    });
    summary.appendChild(title);
    summary.appendChild(list);
    form.parentNode.insertBefore(summary, form);
    summary.focus();
  }

  function settle(message) {
    sending = false;
    button.removeAttribute("aria-disabled");
    form.dataset.sending = "false";
    problemNode.textContent = message || "";
    problemNode.hidden = !message;
  }

  function fieldOfProblem(field) {
    if (field === "payment.expiry") return "expiry";
    if (field === "payment.cvc") return "cvc";
    return "card_number";
  }

  form.addEventListener("submit", function (event) {
    if (tokenField.value) return; // the token is here: this is the submit to topup itself
    event.preventDefault();
    if (sending) return;
    var result = current();
    showBrand(result);
    var problems = [];
    ["card_number", "expiry", "cvc"].forEach(function (name) {
      var message = result[name] ? textOf(result[name]) : "";
      show(name, message);
      if (message) problems.push({ name: name, message: message });
    });
    summarise(problems);
    if (problems.length) return;
    sending = true;
    form.dataset.sending = "true";
    button.setAttribute("aria-disabled", "true");
    problemNode.hidden = true;
    fetch(form.getAttribute("data-tokeniser"), {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({
        number: result.digits, exp_month: result.month, exp_year: result.year,
        cvc: fields.cvc.value.normalize("NFKC").trim()
      })
    }).then(function (answer) {
      return answer.json().then(function (body) { return { status: answer.status, body: body }; });
    }).then(function (answer) {
      if (answer.status === 201 && answer.body.token) {
        tokenField.value = answer.body.token;
        form.submit();
        return;
      }
      var reported = (answer.body.errors || []).map(function (item) {
        return { name: fieldOfProblem(item.field), message: item.message };
      });
      reported.forEach(function (item) { show(item.name, item.message); });
      summarise(reported);
      settle(reported.length ? "" : (answer.body.detail || form.getAttribute("data-text-network")));
    }).catch(function () {
      settle(form.getAttribute("data-text-network"));
    });
  });

  // Back to this page from the next one (the browser's page cache): the form is usable again,
  // and sends the same attempt (the server then shows what it already did).
  window.addEventListener("pageshow", function () {
    tokenField.value = "";
    settle("");
  });
})();
