import { api, describeError, setToken } from "../api.js";
import { field, h, message } from "../dom.js";
import { loggedIn, navigate } from "../app.js";

// The token is kept in sessionStorage (gone when the tab closes) and sent
// only as the X-Consul-Token header.
export function renderLogin(main) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true });
  const out = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in"),
    h("p", {}, "Enter an ACL token (its SecretID). It is kept in this tab only."),
    field("ACL token", input),
    h("button", { type: "submit" }, "Log in"),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    try {
      await api("GET", "/v1/acl/token/self");
    } catch (err) {
      if (!/ACL support disabled/i.test(err.message)) {
        setToken("");
        out.replaceChildren(message("error", err.status === 403 ? "This token is not valid." : describeError(err)));
        return;
      }
    }
    input.value = "";
    loggedIn();
    navigate("#/services");
  });
  main.append(form);
  input.focus();
}
