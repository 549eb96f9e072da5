// Exports an ordinary function and nothing named "tessera_plugin".
extern "C" int tessera_fixture_not_a_plugin_answer() {
  return 42;
}
