//! RPC methods: what [`Stub::call`](crate::Stub::call) reaches.
//!
//! On the wire a call is a method name, the array of the positional
//! arguments and a result, in the value format every SDK reads (JSON, or
//! CBOR for JavaScript's structured clone; [`crate::value`]), so objects in
//! every guest language can call each other. [`methods!`](crate::methods) maps those to ordinary Rust
//! methods of a class: each argument is deserialized with serde into the
//! parameter's type, and the return value (`T`, or `Result<T>` to fail the
//! call) is serialized back.

use std::future::{Future, ready};
use std::pin::Pin;

use dohost_value::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::context;
use crate::{Error, Result};

/// A future the guest's executor runs; not `Send` (the guest has one
/// thread).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A method of class `S` that [`methods!`](crate::methods) can expose;
/// implemented for methods, plain or `async`, taking `&self` and up to six
/// arguments that implement `Deserialize`, returning a `Serialize` value or
/// a [`Result`] of one. `M` only tells the shapes apart.
pub trait Method<'a, S, M> {
    /// Runs the method on `object` with `args` (already split into the
    /// positional arguments), returning the result's bytes (JSON).
    fn invoke(
        self,
        object: &'a S,
        name: &'a str,
        args: Vec<Value>,
    ) -> LocalFuture<'a, Result<Vec<u8>>>;
}

/// Shapes of [`Method`]: plain or async, the arguments and the result.
#[doc(hidden)]
pub struct Shape<Kind, Args, Returns>(Kind, Args, Returns);
#[doc(hidden)]
pub struct Blocking;
#[doc(hidden)]
pub struct Async;
#[doc(hidden)]
pub struct Plain;
#[doc(hidden)]
pub struct Fallible;

fn result_json<T: Serialize>(name: &str, value: &T) -> Result<Vec<u8>> {
    dohost_value::to_bytes(value).map_err(|e| {
        Error::new(format!(
            "the result of {name} cannot be written as JSON: {e}"
        ))
    })
}

/// Checks the number of arguments.
fn arity(name: &str, args: &[Value], expected: usize) -> Result<()> {
    if args.len() == expected {
        return Ok(());
    }
    let plural = if expected == 1 { "" } else { "s" };
    Err(Error::new(format!(
        "{name} takes {expected} argument{plural}, but the call passed {}",
        args.len()
    )))
}

/// Deserializes argument `index` (0-based) of method `name`.
fn argument<T: DeserializeOwned>(name: &str, index: usize, value: Value) -> Result<T> {
    value.deserialized().map_err(|e| {
        Error::new(format!(
            "argument {} of {name} does not fit: {e}",
            index + 1
        ))
    })
}

macro_rules! method_impls {
    ($count:literal $(, $arg:ident)*) => {
        method_impls!(@blocking Plain, R, [], $count $(, $arg)*);
        method_impls!(@blocking Fallible, Result<R>, [?], $count $(, $arg)*);
        method_impls!(@async Plain, R, [], $count $(, $arg)*);
        method_impls!(@async Fallible, Result<R>, [?], $count $(, $arg)*);
    };
    (@decode $name:ident, $args:ident, $count:literal $(, $arg:ident)*) => {{
        arity($name, &$args, $count)?;
        let mut args = $args.into_iter().enumerate();
        $(
            let $arg: $arg = {
                let (index, value) = args.next().expect("counted above");
                argument($name, index, value)?
            };
        )*
        Ok(($($arg,)*))
    }};
    (@blocking $returns:ident, $ret:ty, [$($try:tt)?], $count:literal $(, $arg:ident)*) => {
        impl<'a, S: 'a, F, R, $($arg),*> Method<'a, S, Shape<Blocking, ($($arg,)*), $returns>> for F
        where
            F: FnOnce(&'a S $(, $arg)*) -> $ret,
            R: Serialize,
            $($arg: DeserializeOwned,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn invoke(self, object: &'a S, name: &'a str, args: Vec<Value>) -> LocalFuture<'a, Result<Vec<u8>>> {
                let run = || {
                    let decode = || -> Result<($($arg,)*)> {
                        method_impls!(@decode name, args, $count $(, $arg)*)
                    };
                    let ($($arg,)*) = decode()?;
                    let value = self(object $(, $arg)*);
                    result_json(name, &value $($try)?)
                };
                Box::pin(ready(run()))
            }
        }
    };
    (@async $returns:ident, $ret:ty, [$($try:tt)?], $count:literal $(, $arg:ident)*) => {
        impl<'a, S: 'a, F, Fut, R, $($arg),*> Method<'a, S, Shape<Async, ($($arg,)*), $returns>> for F
        where
            F: FnOnce(&'a S $(, $arg)*) -> Fut + 'a,
            Fut: Future<Output = $ret> + 'a,
            R: Serialize,
            $($arg: DeserializeOwned + 'a,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn invoke(self, object: &'a S, name: &'a str, args: Vec<Value>) -> LocalFuture<'a, Result<Vec<u8>>> {
                let decode = || -> Result<($($arg,)*)> {
                    method_impls!(@decode name, args, $count $(, $arg)*)
                };
                let decoded = decode();
                Box::pin(async move {
                    let ($($arg,)*) = decoded?;
                    let value = self(object $(, $arg)*).await;
                    result_json(name, &value $($try)?)
                })
            }
        }
    };
}

method_impls!(0);
method_impls!(1, A1);
method_impls!(2, A1, A2);
method_impls!(3, A1, A2, A3);
method_impls!(4, A1, A2, A3, A4);
method_impls!(5, A1, A2, A3, A4, A5);
method_impls!(6, A1, A2, A3, A4, A5, A6);

/// Runs `method` (called `name`) on `object` with the array `args` (JSON
/// or CBOR).
#[doc(hidden)]
pub fn invoke<'a, S, M>(
    object: &'a S,
    method: impl Method<'a, S, M>,
    name: &'a str,
    args: &[u8],
) -> LocalFuture<'a, Result<Vec<u8>>> {
    match dohost_value::arguments(args) {
        Ok(args) => method.invoke(object, name, args),
        Err(why) => Box::pin(ready(Err(Error::new(format!(
            "the arguments of {name} cannot be read: {why}"
        ))))),
    }
}

/// The error for a call of a method the class does not expose.
#[doc(hidden)]
pub fn unknown_method(method: &str, exposed: &[&str]) -> Error {
    let class = context::class_name();
    if exposed.is_empty() {
        return Error::new(format!(
            "{class} has no RPC method {method:?}: it exposes none (list them with \
             dohost_sdk::methods! in its DurableObject impl)"
        ));
    }
    Error::new(format!(
        "{class} has no RPC method {method:?}; it has: {}",
        exposed.join(", ")
    ))
}

/// The JSON array of positional arguments for `args` (see
/// [`Stub::call`](crate::Stub::call)).
pub(crate) fn args_json(args: &impl Serialize) -> Result<String> {
    dohost_value::arguments_json(args).map_err(Error::new)
}

/// The name a method is called by: the literal given, else the Rust name.
#[doc(hidden)]
#[macro_export]
macro_rules! __method_name {
    ($wire:literal, $name:ident) => {
        $wire
    };
    (, $name:ident) => {
        stringify!($name)
    };
}

/// Exposes methods of a class as RPC methods, for
/// [`Stub::call`](crate::Stub::call) and for stubs in other guest
/// languages. Write it inside the class's `impl DurableObject` block; it
/// defines [`DurableObject::call`](crate::DurableObject::call). A method is
/// called by its Rust name, or by the name given as `"name" => method`
/// (e.g. a JavaScript caller's camelCase).
///
/// ```ignore
/// impl DurableObject for Counter {
///     fn new(state: State, _env: Env) -> Self { Counter { state } }
///     async fn fetch(&self, _req: Request) -> Result<Response> { ... }
///     dohost_sdk::methods!(increment, add, "getCount" => get_count, total);
/// }
///
/// impl Counter {
///     fn increment(&self) -> Result<u64> { self.add(1) }
///     fn add(&self, by: u64) -> Result<u64> { ... }
///     fn get_count(&self) -> u64 { ... }
///     async fn total(&self) -> Result<u64> { /* awaits other objects */ }
/// }
/// ```
///
/// A method, plain or `async`, takes `&self` and up to six arguments whose
/// types implement `serde::Deserialize`, and returns a type that implements
/// `serde::Serialize` (`()` included) or a [`Result`] of one; an `Err`
/// reaches the caller as a remote error. A call with the wrong number of
/// arguments, or arguments that do not deserialize, fails with a message
/// saying which.
#[macro_export]
macro_rules! methods {
    ($($($wire:literal =>)? $name:ident),* $(,)?) => {
        async fn call(&self, method: &str, args: &[u8]) -> $crate::Result<::std::vec::Vec<u8>> {
            $(
                if method == $crate::__method_name!($($wire)?, $name) {
                    return $crate::__private::invoke(self, Self::$name, method, args).await;
                }
            )*
            ::std::result::Result::Err($crate::__private::unknown_method(
                method,
                &[$($crate::__method_name!($($wire)?, $name)),*],
            ))
        }
    };
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use futures_util::FutureExt;

    use super::*;

    struct Adder {
        total: Cell<u64>,
    }

    impl Adder {
        fn add(&self, by: u64) -> u64 {
            self.total.set(self.total.get() + by);
            self.total.get()
        }

        fn checked(&self, by: u64, label: String) -> Result<(String, u64)> {
            if by == 0 {
                return Err(Error::new("by must not be 0"));
            }
            Ok((label, self.add(by)))
        }

        fn total(&self) -> u64 {
            self.total.get()
        }

        fn reset(&self) {
            self.total.set(0);
        }

        async fn add_later(&self, by: u64) -> u64 {
            self.add(by)
        }

        async fn checked_later(&self, by: u64, label: String) -> Result<(String, u64)> {
            self.checked(by, label)
        }
    }

    /// Runs a method whose future is ready at once (nothing here waits on
    /// the host).
    fn call<'a, M>(
        adder: &'a Adder,
        method: impl Method<'a, Adder, M>,
        name: &'a str,
        args: &str,
    ) -> Result<String> {
        invoke(adder, method, name, args.as_bytes())
            .now_or_never()
            .expect("nothing here waits")
            .map(|bytes| String::from_utf8(bytes).expect("JSON"))
    }

    fn adder(total: u64) -> Adder {
        Adder {
            total: Cell::new(total),
        }
    }

    #[test]
    fn methods_of_every_shape_take_json_arguments_and_return_json() {
        let adder = adder(1);
        assert_eq!(call(&adder, Adder::add, "add", "[2]").unwrap(), "3");
        assert_eq!(
            call(&adder, Adder::checked, "checked", r#"[4, "x"]"#).unwrap(),
            r#"["x",7]"#
        );
        assert_eq!(call(&adder, Adder::total, "total", "[]").unwrap(), "7");
        assert_eq!(call(&adder, Adder::total, "total", "null").unwrap(), "7");
        assert_eq!(
            call(&adder, Adder::add_later, "add_later", "[3]").unwrap(),
            "10"
        );
        assert_eq!(
            call(&adder, Adder::checked_later, "checked_later", r#"[1, "y"]"#).unwrap(),
            r#"["y",11]"#
        );
        assert_eq!(call(&adder, Adder::reset, "reset", "[]").unwrap(), "null");
        assert_eq!(adder.total.get(), 0);
    }

    #[test]
    fn bad_calls_say_what_is_wrong() {
        let err = |args: &str| {
            call(&adder(0), Adder::checked, "checked", args)
                .unwrap_err()
                .message()
                .to_owned()
        };
        assert_eq!(err("[0, \"x\"]"), "by must not be 0");
        assert_eq!(
            err("[1]"),
            "checked takes 2 arguments, but the call passed 1"
        );
        assert!(err(r#"["one", "x"]"#).starts_with("argument 1 of checked does not fit"));
        assert_eq!(
            err("{}"),
            "the arguments of checked cannot be read: the arguments are not an array"
        );
        let one = call(&adder(0), Adder::add, "add", "[1, 2]").unwrap_err();
        assert_eq!(one.message(), "add takes 1 argument, but the call passed 2");
        let later = call(
            &adder(0),
            Adder::checked_later,
            "checked_later",
            "[0, \"x\"]",
        );
        assert_eq!(later.unwrap_err().message(), "by must not be 0");
    }
}
