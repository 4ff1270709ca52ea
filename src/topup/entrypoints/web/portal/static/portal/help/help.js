// The help page with JavaScript: a box that filters the error messages by their text or code
// (without it, every group is listed and the browser's own find works).
(function () {
  "use strict";
  var box = document.querySelector("[data-errors-filter]");
  if (!box) return;
  var input = box.querySelector("input");
  var count = box.querySelector("[data-errors-count]");
  var groups = Array.prototype.slice.call(document.querySelectorAll("[data-errors-group]"));
  var folded = groups.map(function (group) { return !group.open; });
  box.hidden = false;
  input.addEventListener("input", function () {
    var wanted = input.value.trim().toLowerCase();
    var shown = 0;
    groups.forEach(function (group, index) {
      var inGroup = 0;
      group.querySelectorAll("[data-errors-entry]").forEach(function (entry) {
        var match = !wanted || entry.textContent.toLowerCase().indexOf(wanted) !== -1;
        entry.hidden = !match;
        if (match) inGroup += 1;
      });
      group.hidden = inGroup === 0;
      group.open = wanted ? inGroup > 0 : !folded[index];
      shown += inGroup;
    });
    count.textContent = wanted && shown === 0 ? count.getAttribute("data-none") : "";
  });
})();
