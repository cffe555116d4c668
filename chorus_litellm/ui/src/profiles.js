// Fusion profiles (GET/POST/PUT/DELETE /chorus/v1/profiles, proxy admins only): every
// profile with its source (the config file's, read-only; or stored at run time) and
// version, and a YAML editor for the stored ones (the block as litellm_config.yaml writes it;
// JSON, a subset of YAML, is read too). A save names the version it read (the proxy refuses a
// stale one) and every worker serves the change within seconds.
import { parseDocument, stringify } from "yaml";
import { deleteProfile, listProfiles, saveProfile } from "./api.js";
import { ago, h, put } from "./util.js";

const SKELETON = { panel: { members: ["model-a", "model-b"] }, aggregator: { judge: "judge", synthesizer: "writer" } };

export class ProfilesView {
  /** onChange: called after a save or a delete (the model picker follows). */
  constructor(root, sub, newButton, { onChange = () => {} } = {}) {
    this.root = root;
    this.sub = sub;
    this.onChange = onChange;
    this.state = { status: "idle", profiles: [], editing: null, message: null };
    newButton.addEventListener("click", () => this.edit({ isNew: true }));
  }

  async load() {
    try {
      const body = await listProfiles();
      this.state.profiles = body?.profiles ?? [];
      this.state.status = "ok";
    } catch (err) {
      this.state.status = err?.status === 403 ? "forbidden" : "error";
      this.state.profiles = [];
      this.state.error = err?.message ?? String(err);
    }
    this.render();
    return this.state;
  }

  edit({ isNew = false, profile = null }) {
    const from = profile ?? this.state.profiles.find((p) => p.source === "store") ?? this.state.profiles[0];
    this.state.editing = isNew
      ? { isNew, name: "", version: null, readOnly: false, text: pretty(from?.profile ?? SKELETON) }
      : { isNew, name: profile.name, version: profile.version, readOnly: profile.read_only, text: pretty(profile.profile) };
    this.state.message = null;
    this.render();
    this.root.querySelector("[data-testid=profile-editor]")?.focus();
  }

  async save() {
    const ed = this.state.editing;
    const text = this.root.querySelector("[data-testid=profile-editor]").value;
    const name = ed.isNew ? this.root.querySelector("[data-testid=profile-name]").value.trim() : ed.name;
    ed.text = text;
    if (ed.isNew) ed.name = name;
    this.state.message = null; // until the proxy answers
    const { block, error } = readBlock(text);
    if (error) return this.say(error, "bad");
    try {
      const saved = await saveProfile({ name, version: ed.isNew ? null : ed.version, profile: block });
      this.state.editing = null;
      await this.load();
      this.say(`Saved ${saved.model}: version ${saved.version}. Every worker serves it within seconds.`, "ok");
      this.onChange();
    } catch (err) {
      if (err?.status === 409) await this.load(); // changed meanwhile: the list shows its version now
      this.say(err?.message ?? String(err), "bad");
    }
  }

  async remove(profile, button) {
    if (button.dataset.armed !== "1") { // a second click deletes; clicking elsewhere disarms it
      button.dataset.armed = "1";
      button.textContent = "Confirm delete";
      button.addEventListener("blur", () => {
        button.dataset.armed = "";
        button.textContent = "Delete";
      }, { once: true });
      return;
    }
    try {
      const gone = await deleteProfile(profile.name, profile.version);
      if (this.state.editing?.name === profile.name) this.state.editing = null;
      await this.load();
      this.say(`Deleted ${profile.model} (its version ${gone.version} is kept: no stale write brings it back).`, "ok");
      this.onChange();
    } catch (err) {
      this.say(err?.message ?? String(err), "bad");
    }
  }

  say(text, kind) {
    this.state.message = { text, kind };
    this.render();
  }

  render() {
    const { status, profiles, message } = this.state;
    const stored = profiles.filter((p) => p.source === "store").length;
    this.sub.textContent = status === "ok" ? `${profiles.length - stored} from the config file · ${stored} stored` : "";
    if (status === "forbidden") {
      put(this.root, h("p", { class: "muted", "data-testid": "profiles-locked" },
        "Profiles are listed and edited with a proxy-admin key (LiteLLM's proxy_admin role); this key is not one."));
      return;
    }
    if (status === "error") {
      put(this.root, h("p", { class: "muted" }, this.state.error));
      return;
    }
    put(this.root,
      message ? h("div", { class: `notice ${message.kind}`, "data-testid": "profile-message" }, message.text) : null,
      h("table", { class: "tbl profiles-tbl" },
        h("thead", null, h("tr", null, ["profile", "model", "source", "version", "served by", "protocol", ""].map((c) => h("th", null, c)))),
        h("tbody", null, profiles.map((p) => this.row(p)))),
      this.editor());
  }

  row(p) {
    const store = p.source === "store";
    return h("tr", { "data-testid": "profile-row", dataset: { name: p.name, source: p.source, version: String(p.version) } },
      h("td", null, h("b", null, p.name)),
      h("td", null, h("code", null, p.model ?? "—")),
      h("td", null, h("span", { class: `badge ${store ? "st-ok" : "st-skipped"}` }, p.source),
        store ? null : h("span", { class: "muted small" }, " read-only")),
      h("td", { class: "num", "data-testid": "profile-version", title: store && p.updated_at ? `changed ${ago(p.updated_at)}` : "config-file profiles report version 0" }, String(p.version)),
      this.rollout(p),
      h("td", null, p.protocol ?? "—"),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn ghost small", onclick: () => this.edit({ profile: p }) }, store ? "Edit" : "View"),
        store ? h("button", { type: "button", class: "btn ghost small danger", "data-testid": "profile-delete",
          onclick: (ev) => this.remove(p, ev.currentTarget) }, "Delete") : null));
  }

  // How many live workers (and replicas) serve this version, as they last published it:
  // "2/2" once every one does; while a change rolls out, the versions the others still serve.
  rollout(p) {
    const r = p.rollout;
    if (!r) return h("td", { class: "muted", "data-testid": "profile-rollout", title: "the store cannot say now" }, "—");
    const others = Object.entries(r.versions).filter(([v]) => v !== String(p.version)).map(([v, n]) => `${n} at v${v}`);
    return h("td", { "data-testid": "profile-rollout", dataset: { complete: String(r.complete) },
      title: `${r.serving} of ${r.workers} live workers serve version ${p.version}` },
    h("span", { class: `badge ${r.complete ? "st-ok" : "st-pending"}` }, `${r.serving}/${r.workers}`),
    r.complete ? null : h("span", { class: "muted small" }, others.length ? ` rolling out (${others.join(", ")})` : " rolling out"));
  }

  editor() {
    const ed = this.state.editing;
    if (!ed) return null;
    const title = ed.isNew ? "New profile" : ed.readOnly ? `${ed.name} · from litellm_config.yaml (read-only: change the file)`
      : `${ed.name} · editing version ${ed.version}`;
    return h("form", { class: "profile-editor", "data-testid": "profile-form", onsubmit: (ev) => { ev.preventDefault(); this.save(); } },
      h("div", { class: "editor-head" }, h("b", null, title),
        ed.isNew ? h("label", null, "name ", h("input", { "data-testid": "profile-name", value: ed.name, placeholder: "my-profile", spellcheck: "false" }),
          h("span", { class: "muted small" }, " served as fusion/<name>")) : null),
      h("textarea", { "data-testid": "profile-editor", rows: 16, spellcheck: "false", readonly: ed.readOnly || null,
        "aria-label": "The profile's model_info.chorus block, as YAML" }, ed.text),
      h("div", { class: "editor-foot" },
        h("span", { class: "muted small" }, "YAML (or JSON): the model_info.chorus block (README's config reference); validated as the config file is."),
        ed.readOnly ? null : h("button", { type: "submit", class: "btn primary", "data-testid": "profile-save" }, ed.isNew ? "Create" : "Save"),
        h("button", { type: "button", class: "btn ghost", onclick: () => { this.state.editing = null; this.render(); } }, ed.readOnly ? "Close" : "Cancel")));
  }
}

/** The block as litellm_config.yaml would hold it under model_info.chorus. */
export function pretty(block) {
  return stringify(block ?? {}, { indent: 2, lineWidth: 0 });
}

/** The editor's text as a profile block, or an error naming the line: a mapping is required
 * (the proxy validates the fields). */
export function readBlock(text) {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    const err = doc.errors[0];
    const at = err.linePos?.[0] ? ` (line ${err.linePos[0].line}, column ${err.linePos[0].col})` : "";
    return { error: `The block is not valid YAML${at}: ${err.message.split("\n")[0]}` };
  }
  const block = doc.toJS();
  if (block == null || typeof block !== "object" || Array.isArray(block)) {
    return { error: "The block must be a mapping of the profile's fields (panel, aggregator, ...), not a list or a single value." };
  }
  return { block };
}
