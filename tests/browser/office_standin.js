// A stand-in for office.js (https://appsforoffice.microsoft.com/lib/1/hosted/office.js) for the
// browser tests, which cannot reach Microsoft's CDN. Served by Playwright in place of the CDN
// script. It implements only what the task pane and the dialog pages use, with Office's names and
// callback shapes:
//   Office.onReady, Office.context.mailbox (userProfile, diagnostics, getUserIdentityTokenAsync),
//   Office.context.requirements.isSetSupported, Office.context.ui.displayDialogAsync (a real popup
//   window) and, in that popup, Office.context.ui.messageParent (postMessage to the opener),
//   Office.EventType, Office.AsyncResultStatus, Office.HostType, Office.PlatformType.
// Per-test settings come from window.__OFFICE_STANDIN__ (set by an init script):
//   emailAddress, displayName, accountType, hostName, requirementSets {name: version},
//   identityToken (string: getUserIdentityTokenAsync succeeds), dialogError (a code: the next
//   displayDialogAsync fails with it), item (the selected item on a read surface: {itemType:
//   "message"|"appointment", itemId, internetMessageId, from, to, cc, organizer, requiredAttendees,
//   dateTimeCreated, start} with addresses as strings).
// window.__OFFICE_STANDIN_SELECT__(item) selects another item (or null) and fires ItemChanged, as
// Outlook does for a pinned pane. convertToRestId returns the id unchanged (the fakes use one id).
// Calls are recorded in window.__OFFICE_STANDIN_LOG__ for assertions.
(function () {
  "use strict";

  var settings = Object.assign(
    {
      emailAddress: "alice@acme.example",
      displayName: "Alice Example",
      accountType: "enterprise",
      hostName: "OutlookWebApp",
      hostVersion: "16.0.0.0",
      requirementSets: { Mailbox: "1.13", DialogApi: "1.2", DialogOrigin: "1.1", IdentityAPI: "1.3" },
      identityToken: null,
      dialogError: null,
    },
    window.__OFFICE_STANDIN__ || {}
  );
  var log = (window.__OFFICE_STANDIN_LOG__ = window.__OFFICE_STANDIN_LOG__ || []);

  var EventType = {
    DialogMessageReceived: "dialogMessageReceived",
    DialogEventReceived: "dialogEventReceived",
    ItemChanged: "olkItemSelectedChanged",
  };
  var MailboxEnums = {
    ItemType: { Message: "message", Appointment: "appointment" },
    RestVersion: { v1_0: "v1.0", v2_0: "v2.0", Beta: "beta" },
  };
  var AsyncResultStatus = { Succeeded: "succeeded", Failed: "failed" };

  function asyncResult(status, value, error) {
    return { status: status, value: value, error: error || null, asyncContext: undefined };
  }

  function versionAtLeast(have, want) {
    var a = String(have).split(".").map(Number);
    var b = String(want || "1.1").split(".").map(Number);
    for (var i = 0; i < Math.max(a.length, b.length); i += 1) {
      var x = a[i] || 0;
      var y = b[i] || 0;
      if (x !== y) {
        return x > y;
      }
    }
    return true;
  }

  var requirements = {
    isSetSupported: function (name, version) {
      var have = settings.requirementSets[name];
      log.push({ call: "isSetSupported", name: name, version: version });
      return have !== undefined && have !== null && versionAtLeast(have, version);
    },
  };

  function details(address) {
    return address ? { emailAddress: address, displayName: address.split("@")[0] } : null;
  }

  function itemOf(spec) {
    if (!spec) {
      return null;
    }
    var item = {
      itemType: spec.itemType || "message",
      itemId: spec.itemId || "",
      internetMessageId: spec.internetMessageId || "",
      subject: spec.subject || "",
      dateTimeCreated: spec.dateTimeCreated ? new Date(spec.dateTimeCreated) : new Date(),
    };
    if (item.itemType === "appointment") {
      item.organizer = details(spec.organizer);
      item.requiredAttendees = (spec.requiredAttendees || []).map(details);
      item.optionalAttendees = (spec.optionalAttendees || []).map(details);
      item.start = spec.start ? new Date(spec.start) : new Date();
    } else {
      item.from = details(spec.from);
      item.to = (spec.to || []).map(details);
      item.cc = (spec.cc || []).map(details);
    }
    return item;
  }

  var itemHandlers = [];

  var mailbox = {
    item: itemOf(settings.item),
    addHandlerAsync: function (type, handler, options, callback) {
      var cb = typeof options === "function" ? options : callback;
      log.push({ call: "addHandlerAsync", type: type });
      if (type === EventType.ItemChanged) {
        itemHandlers.push(handler);
      }
      if (typeof cb === "function") {
        setTimeout(function () {
          cb(asyncResult(AsyncResultStatus.Succeeded));
        }, 0);
      }
    },
    convertToRestId: function (itemId, version) {
      log.push({ call: "convertToRestId", version: version });
      return itemId;
    },
    userProfile: {
      emailAddress: settings.emailAddress,
      displayName: settings.displayName,
      accountType: settings.accountType,
      timeZone: "UTC",
    },
    diagnostics: { hostName: settings.hostName, hostVersion: settings.hostVersion, OWAView: "OneColumn" },
    getUserIdentityTokenAsync: function (options, callback) {
      var cb = typeof options === "function" ? options : callback;
      log.push({ call: "getUserIdentityTokenAsync" });
      setTimeout(function () {
        if (settings.identityToken) {
          cb(asyncResult(AsyncResultStatus.Succeeded, settings.identityToken));
        } else {
          cb(asyncResult(AsyncResultStatus.Failed, undefined, {
            code: 9018, name: "GenericTokenError", message: "Identity tokens are not available in this mailbox.",
          }));
        }
      }, 0);
    },
  };

  function displayDialogAsync(url, options, callback) {
    var cb = typeof options === "function" ? options : callback;
    var opts = typeof options === "object" && options ? options : {};
    log.push({ call: "displayDialogAsync", url: url, options: opts });
    if (settings.dialogError) {
      var code = settings.dialogError;
      settings.dialogError = null;
      setTimeout(function () {
        cb(asyncResult(AsyncResultStatus.Failed, undefined, { code: code, name: "Dialog error", message: "" }));
      }, 0);
      return;
    }
    var absolute = new URL(url, window.location.href);
    if (absolute.origin !== window.location.origin) {
      // Office requires the first dialog page on the add-in's own domain (or AppDomains).
      setTimeout(function () {
        cb(asyncResult(AsyncResultStatus.Failed, undefined, { code: 12004, name: "Domain not trusted", message: "" }));
      }, 0);
      return;
    }
    var width = Math.max(320, Math.round((screen.availWidth || 1024) * (opts.width || 50) / 100));
    var height = Math.max(480, Math.round((screen.availHeight || 768) * (opts.height || 50) / 100));
    var win = window.open(absolute.href, "_blank", "popup,width=" + width + ",height=" + height);
    if (!win) {
      setTimeout(function () {
        cb(asyncResult(AsyncResultStatus.Failed, undefined, { code: 12009, name: "Dialog blocked", message: "" }));
      }, 0);
      return;
    }
    var handlers = {};
    var closedByAddin = false;
    function fire(type, arg) {
      (handlers[type] || []).forEach(function (handler) {
        handler(arg);
      });
    }
    function onMessage(event) {
      if (event.source !== win || !event.data || event.data.__officeStandin !== "messageParent") {
        return;
      }
      log.push({ call: "DialogMessageReceived", origin: event.origin });
      fire(EventType.DialogMessageReceived, {
        type: EventType.DialogMessageReceived,
        message: event.data.message,
        origin: event.origin,
      });
    }
    window.addEventListener("message", onMessage);
    var timer = setInterval(function () {
      if (win.closed) {
        clearInterval(timer);
        window.removeEventListener("message", onMessage);
        if (!closedByAddin) {
          log.push({ call: "DialogEventReceived", error: 12006 });
          fire(EventType.DialogEventReceived, { type: EventType.DialogEventReceived, error: 12006 });
        }
      }
    }, 150);
    var dialog = {
      addEventHandler: function (type, handler, cb2) {
        (handlers[type] = handlers[type] || []).push(handler);
        if (typeof cb2 === "function") {
          cb2(asyncResult(AsyncResultStatus.Succeeded));
        }
      },
      close: function () {
        closedByAddin = true;
        log.push({ call: "dialog.close" });
        win.close();
      },
      messageChild: function () {},
    };
    setTimeout(function () {
      cb(asyncResult(AsyncResultStatus.Succeeded, dialog));
    }, 0);
  }

  function messageParent(message, messageOptions) {
    if (!window.opener) {
      throw new Error("messageParent is only available in a dialog");
    }
    if (typeof message !== "string") {
      throw new Error("messageParent takes a string");
    }
    // Like Office: the message reaches the host page only from the host page's own domain
    // unless a targetOrigin is given (DialogOrigin 1.1).
    var target = (messageOptions && messageOptions.targetOrigin) || window.location.origin;
    window.opener.postMessage({ __officeStandin: "messageParent", message: message }, target);
  }

  var info = { host: "Outlook", platform: "OfficeOnline" };
  var ready = new Promise(function (resolve) {
    setTimeout(function () {
      resolve(info);
    }, 0);
  });

  window.__OFFICE_STANDIN_SELECT__ = function (spec) {
    mailbox.item = itemOf(spec);
    itemHandlers.forEach(function (handler) {
      handler({ type: EventType.ItemChanged });
    });
  };

  window.Office = {
    HostType: { Outlook: "Outlook" },
    MailboxEnums: MailboxEnums,
    PlatformType: { OfficeOnline: "OfficeOnline", PC: "PC", Mac: "Mac" },
    EventType: EventType,
    AsyncResultStatus: AsyncResultStatus,
    context: {
      mailbox: mailbox,
      requirements: requirements,
      ui: { displayDialogAsync: displayDialogAsync, messageParent: messageParent,
            // Opens the URL in the person's browser: here a new page of the same browser context.
            openBrowserWindow: function (url) {
              log.push({ call: "openBrowserWindow", url: url });
              window.open(url, "_blank");
            } },
      diagnostics: { host: "Outlook", platform: "OfficeOnline", version: "16.0.0.0" },
    },
    onReady: function (callback) {
      return ready.then(function (value) {
        if (typeof callback === "function") {
          callback(value);
        }
        return value;
      });
    },
  };
  ready.then(function () {
    if (typeof window.Office.initialize === "function") {
      window.Office.initialize("");
    }
  });
})();
