// HTML helpers shared by the demo shop script, the dashboard and the demo origin (an ES module:
// browsers load it from /html.js, Node imports it). The tracker needs none: the slot markup it
// shows comes from the core (the edge's answer, or the browser build's `slotHtml`).

/** Escapes text for HTML content and attribute values. */
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
