// Circuit breaker lamp: a light, the state, counters, a countdown to half-open, Open/Reset.
// Python owns the state; this file only draws traits and sends the two button messages.

function remaining(model) {
  const at = model.get("half_open_at_ms");
  return at > 0 ? Math.max(0, Math.round((at - Date.now()) / 1000)) : null;
}

function holdText(model) {
  const hold = model.get("hold");
  if (!hold) return "";
  const at = model.get("hold_until_ms");
  if (!(at > 0)) return `on hold: ${hold} · until lifted`;
  const s = Math.max(0, Math.round((at - Date.now()) / 1000));
  const left = s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`
    : `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  return `on hold: ${hold} · ${left} left`;
}

function detail(model) {
  const parts = [`${model.get("failure_count")} failure(s)`];
  const left = remaining(model);
  if (model.get("state") === "open") {
    parts.push(model.get("held") ? "held open until reset" : left === null ? "" : `half-open in ${left} s`);
  }
  const hold = holdText(model);
  if (hold) parts.push(hold);
  else if (model.get("reason")) parts.push(model.get("reason"));
  return parts.filter(Boolean).join(" · ");
}

function render({ model, el }) {
  const messages = model.get("_messages");
  el.classList.add("tf-lamp");
  el.innerHTML = `
    <span class="tf-lamp-light"></span>
    <span class="tf-lamp-text"><b class="tf-lamp-state"></b><span class="tf-lamp-detail"></span></span>
    <button class="tf-lamp-open" type="button">Open</button>
    <button class="tf-lamp-reset" type="button">Reset</button>`;
  const stateEl = el.querySelector(".tf-lamp-state");
  const detailEl = el.querySelector(".tf-lamp-detail");
  const buttons = el.querySelectorAll("button");
  const draw = () => {
    const state = model.get("state");
    el.dataset.state = state;
    el.dataset.hold = model.get("hold") || "";
    stateEl.textContent = `Breaker ${state}`;
    detailEl.textContent = detail(model);
    buttons.forEach((b) => { b.disabled = model.get("busy"); });
  };
  el.querySelector(".tf-lamp-open").addEventListener("click", () => model.send({ type: messages.breaker_open }));
  el.querySelector(".tf-lamp-reset").addEventListener("click", () => model.send({ type: messages.breaker_reset }));
  model.on("change", draw);
  const timer = setInterval(() => { detailEl.textContent = detail(model); }, 1000);
  draw();
  return () => { clearInterval(timer); model.off("change", draw); };
}

export default { render };
