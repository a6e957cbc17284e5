// The header menu (☰): a menu button with the ARIA menu keyboard pattern.
// Enter, Space or ArrowDown on the button opens it on the first item (ArrowUp on the last);
// ArrowUp/ArrowDown move (wrapping), Home/End jump, a letter jumps to the next item starting with
// it, Escape closes and returns focus to the button, Tab closes and lets focus move on.

/** Wire the menu; returns {open, close, isOpen}. */
export function setupMenu(button, menu) {
  const items = () => Array.from(menu.querySelectorAll('[role="menuitem"]'))
    .filter((item) => !item.hidden && !item.disabled);

  function isOpen() {
    return !menu.hidden;
  }

  function focusItem(index) {
    const list = items();
    if (!list.length) {
      return;
    }
    const wrapped = (index + list.length) % list.length;
    list.forEach((item, i) => item.setAttribute("tabindex", i === wrapped ? "0" : "-1"));
    list[wrapped].focus();
  }

  function onOutside(event) {
    if (!menu.contains(event.target) && !button.contains(event.target)) {
      close(false);
    }
  }

  function open(index = 0) {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    focusItem(index);
    document.addEventListener("pointerdown", onOutside, true);
  }

  function close(returnFocus = true) {
    if (!isOpen()) {
      return;
    }
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", onOutside, true);
    if (returnFocus) {
      button.focus();
    }
  }

  button.addEventListener("click", () => {
    if (isOpen()) {
      close(true);
    } else {
      open(0);
    }
  });

  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      open(0);
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      open(items().length - 1);
    }
  });

  menu.addEventListener("keydown", (event) => {
    const list = items();
    const current = list.indexOf(document.activeElement);
    switch (event.key) {
      case "ArrowDown":
        event.preventDefault();
        focusItem(current + 1);
        break;
      case "ArrowUp":
        event.preventDefault();
        focusItem(current - 1);
        break;
      case "Home":
        event.preventDefault();
        focusItem(0);
        break;
      case "End":
        event.preventDefault();
        focusItem(list.length - 1);
        break;
      case "Escape":
        event.preventDefault();
        close(true);
        break;
      case "Tab":
        close(false);
        break;
      default:
        if (event.key.length === 1 && /\S/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
          const letter = event.key.toLowerCase();
          for (let step = 1; step <= list.length; step += 1) {
            const index = (current + step) % list.length;
            if (list[index].textContent.trim().toLowerCase().startsWith(letter)) {
              focusItem(index);
              break;
            }
          }
        }
    }
  });

  // Focus leaving the menu (a click elsewhere, assistive technology moving on) closes it.
  menu.addEventListener("focusout", (event) => {
    if (event.relatedTarget && !menu.contains(event.relatedTarget) && event.relatedTarget !== button) {
      close(false);
    }
  });

  return { open, close, isOpen };
}
