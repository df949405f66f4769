// A small table: rows from Python, optional row buttons, checkboxes and bulk buttons.
// Clicking a button sends {type: table_action, action, ids}; Python does the work.
// Bulk buttons say what they act on: "Retry selected (2)" or "Retry all (7)".

function cell(value) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  return td;
}

function render({ model, el }) {
  const messages = model.get("_messages");
  el.classList.add("tf-table");
  const selected = new Set();
  const send = (action, ids) => model.send({ type: messages.table_action, action, ids });

  const draw = () => {
    const columns = model.get("columns");
    const rows = model.get("rows");
    const key = model.get("key");
    const rowActions = model.get("row_actions");
    const bulkActions = model.get("bulk_actions");
    const ids = new Set(rows.map((r) => String(r[key])));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    el.replaceChildren();

    const title = document.createElement("div");
    title.className = "tf-table-title";
    title.textContent = model.get("title");
    el.appendChild(title);
    const bulkButtons = [];
    // A bulk button names what it acts on: the checked rows, or every row shown.
    const labelBulk = () => {
      for (const [b, a] of bulkButtons) {
        b.textContent = selected.size ? `${a.label} selected (${selected.size})` : `${a.label} all (${rows.length})`;
      }
    };
    if (bulkActions.length) {
      const bar = document.createElement("div");
      bar.className = "tf-table-bulk";
      for (const a of bulkActions) {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.action = a.name;
        b.disabled = rows.length === 0;
        bulkButtons.push([b, a]);
        b.addEventListener("click", () => send(a.name, selected.size ? [...selected] : [...ids]));
        bar.appendChild(b);
      }
      labelBulk();
      el.appendChild(bar);
    }
    if (!rows.length) {
      const empty = document.createElement("div");
      empty.className = "tf-table-empty";
      empty.textContent = model.get("empty_text");
      el.appendChild(empty);
      return;
    }
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    if (bulkActions.length) head.appendChild(document.createElement("th"));
    for (const c of columns) {
      const th = document.createElement("th");
      th.textContent = c.label;
      head.appendChild(th);
    }
    if (rowActions.length) head.appendChild(document.createElement("th"));
    const body = table.createTBody();
    for (const r of rows) {
      const id = String(r[key]);
      const tr = body.insertRow();
      tr.dataset.id = id;
      if (bulkActions.length) {
        const td = document.createElement("td");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = selected.has(id);
        box.addEventListener("change", () => {
          if (box.checked) selected.add(id);
          else selected.delete(id);
          labelBulk();
        });
        td.appendChild(box);
        tr.appendChild(td);
      }
      for (const c of columns) tr.appendChild(cell(r[c.key]));
      if (rowActions.length) {
        const td = document.createElement("td");
        for (const a of rowActions) {
          const b = document.createElement("button");
          b.type = "button";
          b.dataset.action = a.name;
          b.textContent = a.label;
          b.addEventListener("click", () => send(a.name, [id]));
          td.appendChild(b);
        }
        tr.appendChild(td);
      }
    }
    el.appendChild(table);
    if (model.get("total") > rows.length) {
      const more = document.createElement("div");
      more.className = "tf-table-empty";
      more.textContent = `showing ${rows.length} of ${model.get("total")}`;
      el.appendChild(more);
    }
  };
  model.on("change", draw);
  draw();
  return () => model.off("change", draw);
}

export default { render };
