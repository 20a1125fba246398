// Polling for the computed views that are not blocking queries (the mesh
// graph is a window over recent traffic: its index never "changes"): read
// every `ms` while the page is visible, stop while it is hidden, read at once
// when it shows again. Everything else in the UI uses blocking queries.

/**
 * Run `fn(signal)` now and every `ms` after each run ends, only while the
 * document is visible. Returns a stop function that also aborts a run in
 * flight (its signal fires).
 */
export function pollWhileVisible(fn, ms) {
  const ctrl = new AbortController();
  let timer = null;
  let running = false;
  const schedule = () => {
    if (!ctrl.signal.aborted && !document.hidden && timer === null) timer = setTimeout(tick, ms);
  };
  const tick = async () => {
    timer = null;
    if (ctrl.signal.aborted || document.hidden || running) return;
    running = true;
    try {
      await fn(ctrl.signal);
    } catch {
      // fn shows its own errors; the next tick retries
    } finally {
      running = false;
    }
    schedule();
  };
  const onVisibility = () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else if (timer === null && !running) {
      tick();
    }
  };
  document.addEventListener("visibilitychange", onVisibility);
  tick();
  return () => {
    ctrl.abort();
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
