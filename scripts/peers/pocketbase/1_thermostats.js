// PocketBase migration for the peer benchmark: one collection shaped like a thermostat.
// Records need an authenticated caller (the benchmark uses a superuser token).
migrate((app) => {
  const c = new Collection({
    type: "base",
    name: "thermostats",
    listRule: "@request.auth.id != ''",
    viewRule: "@request.auth.id != ''",
    updateRule: "@request.auth.id != ''",
    fields: [
      { name: "name", type: "text" },
      { name: "target_temperature_f", type: "number" },
      { name: "ambient_temperature_f", type: "number" },
      { name: "hvac_mode", type: "text" },
      { name: "sent_us", type: "number" },
      { name: "seq", type: "number" },
    ],
  });
  app.save(c);
}, (app) => {
  app.delete(app.findCollectionByNameOrId("thermostats"));
});
