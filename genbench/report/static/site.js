// genbench results site: sortable columns and row filters, nothing else. No dependencies, works from file://.
"use strict";

function cellValue(row, index, type) {
  const cell = row.cells[index];
  const raw = cell ? (cell.dataset.value ?? cell.textContent).trim() : "";
  if (type !== "number") return raw.toLowerCase();
  const x = parseFloat(raw);
  return Number.isNaN(x) ? null : x;
}

function compareValues(a, b) {
  // empty numbers sort last whichever the direction
  if (a === null || a === "") return b === null || b === "" ? 0 : 1;
  if (b === null || b === "") return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortBy(table, header) {
  const index = Array.prototype.indexOf.call(header.parentNode.children, header);
  const type = header.dataset.type || "text";
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((r1, r2) => {
    const a = cellValue(r1, index, type), b = cellValue(r2, index, type);
    if (a === null || a === "" || b === null || b === "") return compareValues(a, b);
    return ascending ? compareValues(a, b) : compareValues(b, a);
  });
  rows.forEach((r) => body.appendChild(r));
  for (const th of header.parentNode.children) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
}

function applyFilters(form, table) {
  const chosen = Array.from(form.querySelectorAll("select[data-filter]"))
    .map((s) => [s.dataset.filter, s.value]).filter(([, v]) => v !== "");
  let shown = 0;
  for (const row of table.tBodies[0].rows) {
    row.hidden = !chosen.every(([key, value]) => row.dataset[key] === value);
    if (!row.hidden) shown += 1;
  }
  const counter = document.getElementById("shown");
  if (counter) counter.textContent = `${shown} of ${table.tBodies[0].rows.length} rows shown`;
}

document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((th) => th.addEventListener("click", () => sortBy(table, th)));
});
const form = document.getElementById("filters");
const rowsTable = document.getElementById("rows");
if (form && rowsTable) {
  form.addEventListener("change", () => applyFilters(form, rowsTable));
  applyFilters(form, rowsTable);
}
document.documentElement.dataset.site = "ready";
