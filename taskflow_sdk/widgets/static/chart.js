// A plotly chart drawn from the model's whole figure ("spec"), so any view, however late
// (a page reload, a second display), shows the current figure at once.
// plotly.js comes once per page from the PlotlyLibrary model that "library" points to.

const PREFIX = "IPY_MODEL_";

function loadPlotly(model) {
  if (globalThis.Plotly && globalThis.Plotly.react) return Promise.resolve(globalThis.Plotly);
  if (!globalThis.__taskflowPlotly) {
    globalThis.__taskflowPlotly = (async () => {
      const ref = String(model.get("library") || "");
      const library = await model.widget_manager.get_model(ref.startsWith(PREFIX) ? ref.slice(PREFIX.length) : ref);
      // plotly.min.js is a UMD file that ends by setting window.Plotly; run it with no
      // module system in sight, whatever loader the page has.
      new Function("module", "exports", "define", library.get("source"))(undefined, undefined, undefined);
      return globalThis.Plotly;
    })().catch((err) => {
      globalThis.__taskflowPlotly = undefined;
      throw err;
    });
  }
  return globalThis.__taskflowPlotly;
}

function render({ model, el }) {
  el.classList.add("tf-chart");
  const box = document.createElement("div");
  el.appendChild(box);
  let alive = true;
  let Plotly = null;
  const draw = () => {
    if (!alive || !Plotly) return;
    const spec = model.get("spec") || {};
    Plotly.react(box, spec.data || [], spec.layout || {}, { displaylogo: false, responsive: true });
  };
  loadPlotly(model).then((p) => {
    Plotly = p;
    draw();
  }).catch((err) => {
    box.textContent = `chart unavailable: ${err}`;
  });
  model.on("change:spec", draw);
  return () => {
    alive = false;
    model.off("change:spec", draw);
    if (Plotly) Plotly.purge(box);
  };
}

export default { render };
