/* backpain_report: the sign-up form without a page load.
 *
 * Progressive enhancement, no dependencies, no inline code (works under a Content-Security-Policy
 * of script-src 'self'). Each `[data-bpr-signup]` block's form is posted with
 * `Accept: application/json`: 202 shows the success message in place of the form (naming the
 * address typed, in its `[data-bpr-address]`), 400 marks the
 * fields with their errors, 429 says to try later; the message is announced (aria-live) and
 * focused. Anything else (a network error, an expired CSRF token, a server error) submits the
 * form the ordinary way, so the reader always gets an answer. Links marked `data-bpr-to-form`
 * bring the reader to the form and put the cursor in its first field.
 *
 * The script has no text of its own: the block's `data-bpr-*` attributes, rendered by the
 * template in the page's language, carry every message it shows. A block without the texts of
 * success and of a throttled sign-up (a `<template data-bpr-success>` / `data-bpr-thanks` and a
 * `<template data-bpr-throttled>` / `data-bpr-later`) is left to post the ordinary way.
 *
 * The page is the same bytes for every reader (it may come from a CDN), so what is per reader
 * happens here: the form's source fields get the page's `utm_*` parameters and the referring
 * site's host (not its path or query), and an article page (`[data-bpr-article]`) counts one
 * view with `navigator.sendBeacon` to its own site, carrying the same source.
 */
(function () {
  "use strict";

  var FIELD_ERROR_SUFFIX = "_error";

  function byId(id) {
    return document.getElementById(id);
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll(".invalid-feedback"), function (node) {
      node.parentNode.removeChild(node);
    });
    Array.prototype.forEach.call(form.querySelectorAll(".is-invalid"), function (input) {
      input.classList.remove("is-invalid");
      input.removeAttribute("aria-invalid");
      var described = (input.getAttribute("aria-describedby") || "")
        .split(/\s+/)
        .filter(function (id) {
          return id && id.slice(-FIELD_ERROR_SUFFIX.length) !== FIELD_ERROR_SUFFIX;
        });
      if (described.length) {
        input.setAttribute("aria-describedby", described.join(" "));
      } else {
        input.removeAttribute("aria-describedby");
      }
    });
  }

  function markField(form, name, messages) {
    var input = form.querySelector('[name="' + name + '"]');
    if (!input || input.type === "hidden") {
      return null;
    }
    var errorId = input.id + FIELD_ERROR_SUFFIX;
    var feedback = document.createElement("div");
    feedback.id = errorId;
    feedback.className = "invalid-feedback";
    var strong = document.createElement("strong");
    strong.textContent = messages[0];
    feedback.appendChild(strong);
    // After the label of a checkbox (as the server renders it), else after the input.
    var anchor = input.type === "checkbox" && input.labels && input.labels[0] ? input.labels[0] : input;
    anchor.parentNode.insertBefore(feedback, anchor.nextSibling);
    input.classList.add("is-invalid");
    input.setAttribute("aria-invalid", "true");
    var described = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    described.push(errorId);
    input.setAttribute("aria-describedby", described.join(" "));
    return { id: input.id, message: messages[0] };
  }

  function text(block, name) {
    return block.getAttribute("data-bpr-" + name) || "";
  }

  function errorSummary(block, marked, others) {
    var box = document.createElement("div");
    box.className = "bpr-alert";
    var intro = document.createElement("p");
    intro.textContent = text(block, marked.length + others.length > 1 ? "correct-many" : "correct-one");
    box.appendChild(intro);
    var list = document.createElement("ul");
    marked.forEach(function (item) {
      var li = document.createElement("li");
      var link = document.createElement("a");
      link.href = "#" + item.id;
      link.textContent = item.message;
      li.appendChild(link);
      list.appendChild(li);
    });
    others.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      list.appendChild(li);
    });
    box.appendChild(list);
    return box;
  }

  function show(block, message, content) {
    message.textContent = "";
    message.appendChild(content);
    message.focus();
  }

  // The attribute with each message's text, for a block without a <template> of it.
  var FALLBACK_TEXT = { success: "thanks", throttled: "later" };

  function hasMessage(block, name) {
    var template = block.querySelector("template[data-bpr-" + name + "]");
    return Boolean(template || text(block, FALLBACK_TEXT[name]));
  }

  function fromTemplate(block, name) {
    var template = block.querySelector("template[data-bpr-" + name + "]");
    if (template && template.content) {
      return document.importNode(template.content, true);
    }
    var fallback = document.createElement("p");
    fallback.textContent = text(block, FALLBACK_TEXT[name]);
    return fallback;
  }

  // The thank-you names the address as the reader typed it (as text, never as markup): the
  // page is the same for everyone, so only the browser knows it.
  function withAddress(content, form) {
    var input = form.querySelector('[name="email"]');
    var typed = input ? input.value.trim() : "";
    if (typed && content.querySelectorAll) {
      Array.prototype.forEach.call(content.querySelectorAll("[data-bpr-address]"), function (node) {
        node.textContent = typed;
      });
    }
    return content;
  }

  function submitNormally(form) {
    // form.submit may be shadowed by an input named "submit": call the method itself.
    HTMLFormElement.prototype.submit.call(form);
  }

  function enhance(block) {
    var form = block.querySelector("form");
    var message = block.querySelector("[data-bpr-message]");
    if (!form || !message || !window.fetch || !window.URLSearchParams || !window.FormData) {
      return;
    }
    if (!hasMessage(block, "success") || !hasMessage(block, "throttled")) {
      // Nothing to say in place (markup without the texts, e.g. an embedding page's): the form
      // posts the ordinary way and the reader gets the site's own page, never a blank one.
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (form.getAttribute("aria-busy") === "true") {
        return;
      }
      var buttons = form.querySelectorAll('[type="submit"]');
      function busy(on) {
        form.setAttribute("aria-busy", on ? "true" : "false");
        Array.prototype.forEach.call(buttons, function (button) {
          button.disabled = on;
        });
      }
      busy(true);
      fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) {
          if (response.status === 202) {
            clearErrors(form);
            form.hidden = true;
            show(block, message, withAddress(fromTemplate(block, "success"), form));
            return;
          }
          if (response.status === 429) {
            busy(false);
            show(block, message, fromTemplate(block, "throttled"));
            return;
          }
          if (response.status !== 400) {
            throw new Error("unexpected status " + response.status);
          }
          return response.json().then(function (data) {
            busy(false);
            clearErrors(form);
            var marked = [];
            var others = [];
            Object.keys(data.errors || {}).forEach(function (name) {
              var item = markField(form, name, data.errors[name]);
              if (item) {
                marked.push(item);
              } else {
                others.push(data.errors[name][0]);
              }
            });
            show(block, message, errorSummary(block, marked, others));
          });
        })
        .catch(function () {
          busy(false);
          submitNormally(form);
        });
    });
  }

  function toForm(event) {
    var target = byId((this.getAttribute("href") || "").slice(1));
    var field = target && target.querySelector("input:not([type=hidden]):not([tabindex='-1'])");
    if (!field || (field.form && field.form.hidden)) {
      return; // the anchor alone, as without JavaScript
    }
    event.preventDefault();
    target.scrollIntoView({ block: "start" });
    field.focus({ preventScroll: true });
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "#" + target.id);
    }
  }

  var UTM_FIELDS = ["utm_source", "utm_medium", "utm_campaign"];

  // Where the reader came from: this page's utm_* and the host of another site that linked here.
  function pageSource() {
    var source = {};
    var params = window.URLSearchParams ? new URLSearchParams(window.location.search) : null;
    UTM_FIELDS.forEach(function (name) {
      source[name] = params ? (params.get(name) || "").slice(0, 400) : "";
    });
    var host = "";
    try {
      host = document.referrer ? new URL(document.referrer).hostname : "";
    } catch (error) {
      host = "";
    }
    source.referrer_host = host && host !== window.location.hostname ? host : "";
    return source;
  }

  function fillSource(form, source) {
    Object.keys(source).forEach(function (name) {
      var input = form.querySelector('input[type="hidden"][name="' + name + '"]');
      if (input && !input.value) {
        input.value = source[name];
      }
    });
  }

  // One view per page load, to the page's own site; nothing about the reader but the source.
  function countView(article, source) {
    var url = article.getAttribute("data-bpr-views");
    if (!url || !navigator.sendBeacon || !window.URLSearchParams) {
      return;
    }
    var body = new URLSearchParams();
    body.set("article", article.getAttribute("data-bpr-article") || "");
    Object.keys(source).forEach(function (name) {
      body.set(name, source[name]);
    });
    navigator.sendBeacon(url, body);
  }

  function start() {
    var source = pageSource();
    Array.prototype.forEach.call(document.querySelectorAll("[data-bpr-signup] form"), function (form) {
      fillSource(form, source);
    });
    var article = document.querySelector("[data-bpr-article][data-bpr-views]");
    if (article) {
      countView(article, source);
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-bpr-signup]"), enhance);
    Array.prototype.forEach.call(document.querySelectorAll("a[data-bpr-to-form]"), function (link) {
      link.addEventListener("click", toForm);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
