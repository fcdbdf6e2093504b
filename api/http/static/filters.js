// Filters and the time-travel moment live in the page's URL, so a filtered (or past) board
// can be shared as a link; the board API takes the same names.

export const FILTER_NAMES = ["agent", "team", "queue", "type", "label", "q"];

export function readView(search = location.search) {
  // {filters: {name: value}, asOf: ISO time or ""} from the address bar.
  const params = new URLSearchParams(search);
  const filters = {};
  for (const name of FILTER_NAMES) {
    const value = (params.get(name) || "").trim();
    if (value) filters[name] = value;
  }
  return { filters, asOf: (params.get("as_of") || "").trim() };
}

export function writeView({ filters, asOf }) {
  const params = new URLSearchParams();
  for (const name of FILTER_NAMES) if (filters[name]) params.set(name, filters[name]);
  if (asOf) params.set("as_of", asOf);
  const search = params.toString() ? `?${params}` : "";
  if (search !== location.search) history.pushState(null, "", location.pathname + search);
}


export class FilterForm {
  // The filter bar: shows the URL's filters, and hands changes to onChange(filters).
  constructor(form, onChange) {
    this.form = form;
    this.onChange = onChange;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.onChange(this.read());
    });
    form.querySelector("select[name=type]").addEventListener("change", () => {
      this.onChange(this.read());
    });
    form.addEventListener("reset", (event) => {
      event.preventDefault();
      this.show({});
      this.onChange({});
    });
  }

  read() {
    const filters = {};
    for (const name of FILTER_NAMES) {
      const value = (this.form.elements[name].value || "").trim();
      if (value) filters[name] = value;
    }
    return filters;
  }

  show(filters) {
    for (const name of FILTER_NAMES) this.form.elements[name].value = filters[name] || "";
    const count = Object.keys(filters).length;
    this.form.querySelector("#filter-summary").textContent = count
      ? `${count} filter${count > 1 ? "s" : ""} on`
      : "";
  }
}
