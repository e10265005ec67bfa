// Light or dark as the Cockpit shell is: its choice is in localStorage "shell:style" ("auto"
// follows the browser), and the shell announces a change with a "cockpit-style" event.
const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");

function apply(style) {
    style = style || localStorage.getItem("shell:style") || "auto";
    const dark = style === "dark" || (style === "auto" && darkQuery.matches);
    document.documentElement.classList.toggle("pf-v6-theme-dark", dark);
}

window.addEventListener("storage", event => {
    if (event.key === "shell:style")
        apply();
});
window.addEventListener("cockpit-style", event => apply(event.detail && event.detail.style));
darkQuery.addEventListener("change", () => apply());
apply();
