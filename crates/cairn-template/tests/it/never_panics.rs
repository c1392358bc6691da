//! Random documents never make the parser or the model panic, and every
//! diagnostic they produce points into the document.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::generators::{Tree, mutated_template, raw_text, template, tree};
use crate::{Reached, check_document, config};

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text(text in raw_text()) {
        check_document(&text);
    }

    #[test]
    fn random_yaml_trees(tree in tree(4)) {
        check_document(&tree.to_yaml());
    }

    #[test]
    fn random_templates(template in template()) {
        check_document(&template.to_yaml());
    }

    #[test]
    fn mutated_templates(text in mutated_template()) {
        check_document(&text);
    }
}

/// The generated templates are mostly YAML, and some are valid templates:
/// otherwise the properties above would test only the syntax errors.
#[test]
fn generated_templates_reach_the_model() {
    let mut runner = TestRunner::deterministic();
    let strategy = template();
    let mut counts = [0usize; 3];
    let n = 300;
    for _ in 0..n {
        let tree: Tree = strategy.new_tree(&mut runner).unwrap().current();
        let reached = check_document(&tree.to_yaml());
        counts[reached as usize] += 1;
    }
    let [syntax, model, valid] = counts;
    eprintln!("{n} generated templates: {syntax} not YAML, {model} invalid, {valid} valid");
    assert!(
        syntax * 10 < n,
        "{syntax} of {n} generated templates are not YAML"
    );
    assert!(
        model > n / 4 && valid > n / 10,
        "only {valid} of {n} are valid templates ({model} reached the model)"
    );
    assert_eq!(Reached::Syntax as usize, 0);
}

/// A few documents that once were, or could easily be, troublesome.
#[test]
fn edge_cases() {
    for text in [
        "",
        "\u{feff}",
        "\u{feff}cairn: 1\n",
        "é",
        "é{{\u{85}",
        "é: [",
        "a: \"é\\",
        "a: 'é",
        "a: |\n  é\n b",
        "a: *x",
        "a: &x 1\nb: *x\n",
        "---\n---\n",
        "- é\n- {{",
        "résumé: {{ x }}",
        "a: \t1",
        "\t",
        "a:\n\t- b",
        "{ a: 1, a: 2 }",
        "\"\\u00e9\": 1\n\"é\": 2\n",
        "resources:\n  é: {type: x}\n",
        "resources:\n  web: {type: server, count: 1, for_each: [a]}\n",
        "outputs:\n  o: \"{{ é }}\"\n",
        "variables:\n  v: \"\\té{{ 1 + }}\"\n",
        "variables:\n  v: |\n    é\n    {{ 1 + }}\n",
        "variables:\n  v: >\n    é\n\n    {{ a.b.c }}\n",
        "variables:\n  v: 'é''{{ x }}'\n",
        "variables:\n  v: \"\\U0001F600{{ x }}\"\n",
        "{\"a\": 1,}",
        "{\"é\": \"\\ud800\"}",
        "[1, 2",
        "a: 1\n\u{0}",
        "a: b\r\nc: d\r\n",
        "a: b\rc: d",
    ] {
        check_document(text);
    }
}
