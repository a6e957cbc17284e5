// Small DOM helpers. Text is always set with textContent: nothing from the API becomes markup.

/** The element with this id (throws when the markup lacks it: a bug, not a runtime condition). */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) {
    throw new Error(`missing element #${id}`);
  }
  return element;
}

/** Show or hide an element with the hidden attribute (CSS keeps [hidden] hidden). */
export function setVisible(element, visible) {
  element.hidden = !visible;
}

/** Set an element's text (empty clears it). */
export function setText(element, text) {
  element.textContent = text == null ? "" : String(text);
}

function describedBy(element) {
  return (element.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
}

/** Link (or unlink) an error element to a control through aria-describedby. */
function linkDescription(control, id, linked) {
  const ids = describedBy(control).filter((existing) => existing !== id);
  if (linked) {
    ids.push(id);
  }
  if (ids.length) {
    control.setAttribute("aria-describedby", ids.join(" "));
  } else {
    control.removeAttribute("aria-describedby");
  }
}

/** Show `message` in `errorElement` next to `control`, mark the control invalid and link the two. */
export function showFieldError(control, errorElement, message) {
  setText(errorElement, message);
  control.setAttribute("aria-invalid", "true");
  linkDescription(control, errorElement.id, true);
}

/** Clear an error shown with showFieldError. */
export function clearFieldError(control, errorElement) {
  setText(errorElement, "");
  control.removeAttribute("aria-invalid");
  linkDescription(control, errorElement.id, false);
}

/** Show an error for an action (a button's outcome), linked to the button when given. */
export function showActionError(errorElement, message, control) {
  setText(errorElement, message);
  if (control) {
    linkDescription(control, errorElement.id, Boolean(message));
  }
}

/**
 * Mark a button busy while `work()` runs: disabled (so it cannot be pressed twice), a spinner and a
 * progress label. Returns work()'s result.
 */
export async function whileBusy(button, busyLabel, work) {
  if (button.dataset.busy === "true") {
    return undefined;
  }
  const label = button.querySelector(".button-label");
  const original = label ? label.textContent : button.textContent;
  button.dataset.busy = "true";
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.classList.add("is-busy");
  if (label && busyLabel) {
    label.textContent = busyLabel;
  }
  try {
    return await work();
  } finally {
    button.dataset.busy = "false";
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.classList.remove("is-busy");
    if (label) {
      label.textContent = original;
    }
  }
}

/** Move focus to an element (headings carry tabindex="-1" for this). */
export function focus(element) {
  if (element && typeof element.focus === "function") {
    element.focus({ preventScroll: false });
  }
}

/** Scroll an element into view and focus it. */
export function reveal(element) {
  if (typeof element.scrollIntoView === "function") {
    element.scrollIntoView({ block: "start", behavior: "auto" });
  }
  focus(element);
}
