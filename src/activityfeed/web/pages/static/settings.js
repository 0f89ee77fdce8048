// Settings pages: a "Copy" button for the new API key's secret. Progressive: without
// JavaScript (or without the Clipboard API) the button stays hidden and the secret is
// selectable in its read-only field.
(() => {
  "use strict";
  if (!navigator.clipboard) return;
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const field = document.querySelector(button.dataset.copy);
    const status = button.parentElement.querySelector(".copy-status");
    if (!field) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = "Copied to the clipboard.";
      } catch {
        field.select();
        if (status) status.textContent = "Copy failed; the secret is selected, press Ctrl+C.";
      }
    });
  }
})();
