// Progressive enhancement: greet through the JSON API without reloading the
// page. Without JavaScript the form submits GET /?name=... and the server
// renders the same result.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("greet");
  const greeting = document.getElementById("greeting");
  const error = document.getElementById("error");
  const greeted = document.getElementById("greeted");

  const show = (el, text) => {
    greeting.hidden = error.hidden = greeted.hidden = true;
    el.textContent = text; // text, never HTML
    el.hidden = false;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = new FormData(form).get("name");
    const query = new URLSearchParams({ name });
    try {
      const rsp = await fetch("/greeter?" + query, { headers: { Accept: "application/json" } });
      const body = await rsp.json();
      if (rsp.ok) {
        show(greeting, body.message);
        if (body.greeted !== undefined) {
          greeted.textContent = body.greeted === 1 ? `${name} has been greeted once` : `${name} has been greeted ${body.greeted} times`;
          greeted.hidden = false;
        }
      } else {
        show(error, body.error);
      }
      history.replaceState(null, "", "/?" + query);
    } catch (e) {
      show(error, "The frontend could not be reached: " + e.message);
    }
  });
});
