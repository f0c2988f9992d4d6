//! The simulated adapter's keys (`adapters/simulated/src/config.rs`) in whole configurations:
//! values parsed, and every message at its position.

use std::time::Duration;

use gateway_api::Value;
use xmpp_iot_gateway_simulated::Generator;

use xmpp_iot_gateway::config::testing::{errors, ok, warnings};
use xmpp_iot_gateway::config::Loaded;

/// A component head and a simulated adapter `sim`; a test's own lines start at line 7.
const HEAD: &str = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n\
    [[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n";

/// HEAD and a device `d` on `sim` with `fields`, which start at line 10.
fn device(fields: &str) -> String {
    format!("{HEAD}[[device]]\nid = \"d\"\nadapter = \"sim\"\n{fields}")
}

/// The generator of field `field` of device `device`.
fn simulated(loaded: &Loaded, device: usize, field: usize) -> Generator {
    let s = &loaded.config.devices[device].fields[field].settings;
    s.get::<Generator>().expect("a simulated field").clone()
}

#[test]
fn generator_validation() {
    let gen = |field: &str| {
        let loaded = ok(&device(&format!("[[device.field]]\nname = \"f\"\n{field}")));
        simulated(&loaded, 0, 0)
    };
    assert_eq!(
        gen("generator = \"step\"\nmin = -5\nmax = 5\nperiod = \"2s\"\n"),
        Generator::Step {
            min: -5.0,
            max: 5.0,
            period: Duration::from_secs(2),
            start: -5.0
        }
    );
    assert_eq!(
        gen("generator = \"random\"\nvalue = 20\n"),
        Generator::Random {
            min: 0.0,
            max: 100.0,
            start: 20.0
        }
    );
    assert_eq!(
        gen("generator = \"constant\"\nvalue = 21.5\n"),
        Generator::Constant {
            value: Value::Float(21.5)
        }
    );
    assert_eq!(
        gen("type = \"integer\"\ngenerator = \"constant\"\nvalue = 4.0\n"),
        Generator::Constant {
            value: Value::Int(4)
        }
    );
    assert_eq!(
        gen("type = \"string\"\nvalue = 5\n"),
        Generator::Constant {
            value: Value::Text("5".into())
        }
    );

    let errs = |field: &str| errors(&device(&format!("[[device.field]]\nname = \"f\"\n{field}")));
    // Lines: 10 [[device.field]], 11 name, 12.. the keys given.
    assert_eq!(
        errs("min = 10\nmax = 10\n"),
        ["13:7: `min` (10) must be less than `max` (10)"]
    );
    assert_eq!(
        errs("min = 200\n"),
        ["12:7: `min` (200) must be less than `max` (100)"]
    );
    assert_eq!(
        errs("type = \"boolean\"\n"),
        ["10:1: field `f` of device `d` uses generator `constant` (a simulated boolean field is constant) and needs a `value`"]
    );
    assert_eq!(
        errs("generator = \"constant\"\n"),
        ["12:1: field `f` of device `d` uses generator `constant` and needs a `value`"]
    );
    assert_eq!(
        errs("type = \"integer\"\ngenerator = \"constant\"\nvalue = 4.5\n"),
        ["14:9: `value` does not fit the field's type `integer`: \"4.5\" is not an integer"]
    );
    assert_eq!(
        errs("type = \"boolean\"\nvalue = \"maybe\"\n"),
        ["13:9: `value` does not fit the field's type `boolean`: \"maybe\" is not a boolean (use true/false, on/off or 1/0)"]
    );
    assert_eq!(
        errs("type = \"boolean\"\ngenerator = \"sine\"\n"),
        ["13:13: generator `sine` makes numbers, but field `f` of device `d` is boolean: use `generator = \"constant\"` with a `value`"]
    );
    assert_eq!(
        errs("generator = \"step\"\nvalue = 150\n"),
        ["13:9: `value` (150) must lie between `min` (0) and `max` (100)"]
    );
    assert_eq!(
        errs("generator = \"step\"\nvalue = \"x\"\n"),
        ["13:9: `value` is the start of generator `step`: it must be a number"]
    );
    assert_eq!(
        errs("generator = \"sawtooth\"\n"),
        ["12:13: unknown generator `sawtooth` (generators: `sine`, `step`, `random` and `constant`)"]
    );
    assert_eq!(errs("generator = \"sin\"\n")[0], "12:13: unknown generator `sin`; did you mean `sine`? (generators: `sine`, `step`, `random` and `constant`)");
    assert_eq!(
        errs("value = [1]\n"),
        ["12:9: `value` must be a number, a boolean or a string, not an array"]
    );

    let loaded = ok(&device("[[device.field]]\nname = \"f\"\ngenerator = \"constant\"\nvalue = 1\nmin = 0\nperiod = \"1s\"\n"));
    let w = warnings(&loaded);
    assert!(
        w.contains(&"14:1: `min` has no effect with generator `constant`".to_owned()),
        "{w:?}"
    );
    assert!(
        w.contains(&"15:1: `period` has no effect with generator `constant`".to_owned()),
        "{w:?}"
    );
    let loaded = ok(&device("[[device.field]]\nname = \"f\"\nvalue = 1\n"));
    assert!(
        warnings(&loaded).contains(&"12:1: `value` has no effect with generator `sine`".to_owned())
    );
}

#[test]
fn device_durations() {
    let e = errors(&device("poll = \"0\"\noffline_every = \"10s\"\noffline_for = \"10s\"\n[[device.field]]\nname = \"t\"\nperiod = \"0s\"\n"));
    assert_eq!(
        e,
        [
            "10:8: `poll` must be longer than zero",
            "12:15: `offline_for` (10s) must be shorter than `offline_every` (10s)",
            "15:10: `period` must be longer than zero",
        ]
    );
    let loaded = ok(&device(
        "offline_for = \"5s\"\n[[device.field]]\nname = \"t\"\n",
    ));
    assert!(warnings(&loaded)
        .contains(&"10:1: `offline_for` has no effect without `offline_every`".to_owned()));
}
