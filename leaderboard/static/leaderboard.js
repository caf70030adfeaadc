/* Sortable tables for the coreset-bench leaderboard. No dependencies; works from file://.
   A table with class "sortable" sorts by a column when its header is clicked (or Enter/Space).
   Cells may carry data-sort (the raw value); headers carry data-type ("num" | "text") and
   data-first ("asc" | "desc", the direction of the first click). Empty values sort last. */
(function () {
  "use strict";

  function cellValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (type === "num") {
      if (raw === "") { return null; }
      var x = parseFloat(raw);
      return isNaN(x) ? null : x;
    }
    return raw === "" ? null : raw.toLowerCase();
  }

  function sortBy(table, th, index) {
    var type = th.getAttribute("data-type") || "text";
    var current = th.getAttribute("aria-sort");
    var first = th.getAttribute("data-first") === "desc" ? "descending" : "ascending";
    var dir = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return { row: row, key: cellValue(row, index, type), i: i }; });
    keyed.sort(function (a, b) {
      if (a.key === null && b.key === null) { return a.i - b.i; }
      if (a.key === null) { return 1; }
      if (b.key === null) { return -1; }
      if (a.key < b.key) { return -sign; }
      if (a.key > b.key) { return sign; }
      return a.i - b.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    var headers = th.parentNode.cells;
    for (var j = 0; j < headers.length; j++) { headers[j].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
  }

  function init(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var headRow = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(headRow.cells, function (th, index) {
      th.classList.add("sort-header");
      th.addEventListener("click", function () { sortBy(table, th, index); });
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, th, index); }
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), init);

  /* "show secondary metrics": secondary columns are hidden until asked for */
  Array.prototype.forEach.call(document.querySelectorAll("input.toggle-secondary"), function (box) {
    box.addEventListener("change", function () {
      var table = document.querySelector('table[data-table="' + box.getAttribute("data-table") + '"]');
      if (table) { table.classList.toggle("hide-secondary", !box.checked); }
    });
  });

  /* filter box of a long table: rows whose method name does not contain the text are hidden */
  Array.prototype.forEach.call(document.querySelectorAll("input.row-filter"), function (box) {
    box.addEventListener("input", function () {
      var table = document.getElementById(box.getAttribute("data-target"));
      if (!table) { return; }
      var q = box.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var name = (row.getAttribute("data-method") || "").toLowerCase();
        row.hidden = q !== "" && row.hasAttribute("data-method") && name.indexOf(q) < 0;
      });
    });
  });
})();
